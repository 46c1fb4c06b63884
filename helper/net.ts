/**
 * The network snapshot behind guest-network-get-interfaces, taken in one helper
 * round trip: the links of /sys/class/net with their ifindex and MAC address
 * text, the addresses getifaddrs(3) reports (Deno.networkInterfaces(), which
 * needs --allow-sys in the agent and nothing here), and /proc/net/dev. The agent
 * orders and formats them (commands/network.ts). Reads only, no input but the
 * request itself. The helper reuses a link's ifindex and MAC text for up to
 * {@link LINK_TTL_MS}.
 *
 * @module
 */

import { errnoName } from "./errno.ts";
import { readTextSync } from "./ops.ts";

/** One link of /sys/class/net. */
export interface NetLink {
  name: string;
  /** /sys/class/net/NAME/ifindex; null when it could not be read. */
  ifindex: number | null;
  /** /sys/class/net/NAME/address as read (trimmed); null when it could not be read. */
  address: string | null;
}

/** One address (an AF_INET or AF_INET6 entry of getifaddrs). */
export interface NetAddress {
  family: "IPv4" | "IPv6";
  name: string;
  address: string;
  netmask: string;
}

/** The NetSnapshot reply. */
export interface NetSnapshot {
  /** The links in readdir order; null when /sys/class/net could not be listed. */
  links: NetLink[] | null;
  /** errno name of the failed listing. */
  linksError?: string;
  addresses: NetAddress[];
  /** /proc/net/dev, or null when unreadable. */
  netDev: string | null;
}

/** Where a snapshot is read from (the real system here; a fixture tree in tests). */
export interface NetSource {
  readDir(path: string): Promise<string[]>;
  readText(path: string): Promise<string>;
  addresses(): NetAddress[];
}

/** How long a link's ifindex and MAC address text are reused by {@link netSnapshot}. */
export const LINK_TTL_MS = 10_000;

/** What {@link netSnapshot} keeps between snapshots. */
export class LinkCache {
  /** Links read earlier, by name, with the time they were read (Date.now()). */
  readonly links = new Map<string, { link: NetLink; at: number }>();
  /**
   * The last listing of /sys/class/net, kept only when it held exactly the names of
   * /proc/net/dev (sorted, one per line: `devNames`).
   */
  listing: { names: string[]; devNames: string } | undefined;
}

/** The interface names of a /proc/net/dev text, sorted, one per line. */
function devNamesOf(netDev: string): string {
  const out: string[] = [];
  for (const line of netDev.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) out.push(line.slice(0, colon).trim());
  }
  return out.sort().join("\n");
}

/**
 * Takes a snapshot from `source`. With `cache`, a link listed again within
 * {@link LINK_TTL_MS} of its last reading is not read again, and /sys/class/net is not
 * listed again while /proc/net/dev names the same interfaces as when it last held exactly
 * that listing's names (the addresses and the counters are read every time); the cache
 * keeps only the links listed.
 */
export async function netSnapshot(
  source: NetSource,
  cache?: LinkCache,
  now = Date.now(),
): Promise<NetSnapshot> {
  const addresses = source.addresses();
  let netDev: string | null = null;
  try {
    netDev = await source.readText("/proc/net/dev");
  } catch {
    netDev = null;
  }
  const devNames = netDev === null ? null : devNamesOf(netDev);
  let names: string[] | null = null;
  let linksError: string | undefined;
  if (cache?.listing && devNames !== null && cache.listing.devNames === devNames) {
    names = cache.listing.names;
  } else {
    if (cache) cache.listing = undefined;
    try {
      names = await source.readDir("/sys/class/net");
      if (cache && devNames !== null && [...names].sort().join("\n") === devNames) {
        cache.listing = { names, devNames };
      }
    } catch (e) {
      linksError = errnoName(e);
    }
  }
  let links: NetLink[] | null = null;
  if (names) {
    links = [];
    const earlier = new Map(cache?.links);
    cache?.links.clear();
    for (const name of names) {
      const known = earlier.get(name);
      if (known && now >= known.at && now - known.at <= LINK_TTL_MS) {
        links.push(known.link);
        cache?.links.set(name, known);
        continue;
      }
      const read = async (attr: string) => {
        try {
          return (await source.readText(`/sys/class/net/${name}/${attr}`)).trim();
        } catch {
          return null;
        }
      };
      const index = await read("ifindex");
      const link = {
        name,
        ifindex: index !== null && /^\d+$/.test(index) ? Number(index) : null,
        address: await read("address"),
      };
      links.push(link);
      cache?.links.set(name, { link, at: now });
    }
  }
  return { links, ...(linksError ? { linksError } : {}), addresses, netDev };
}

/**
 * The live system, as the helper (--allow-all) sees it. Reads are synchronous: sysfs and
 * /proc files are generated in memory, and a thread hop per file cost more than the read.
 */
export const LIVE: NetSource = {
  // deno-lint-ignore require-await
  async readDir(path) {
    return Array.from(Deno.readDirSync(path), (e) => e.name);
  },
  // deno-lint-ignore require-await
  async readText(path) {
    return readTextSync(path);
  },
  addresses: () =>
    Deno.networkInterfaces().map((i) => ({
      family: i.family,
      name: i.name,
      address: i.address,
      netmask: i.netmask,
    })),
};
