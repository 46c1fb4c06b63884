import assert from "node:assert/strict";
import { runGaCommand } from "../../commands/run_command.ts";
import { QgaError } from "../../protocol/errors.ts";
import { SysError } from "../../system/mod.ts";
import { fakeContext } from "../helpers/fake_context.ts";

function qgaError(desc: string) {
  return (e: unknown) => e instanceof QgaError && e.message === desc;
}

Deno.test("runGaCommand turns failures into ga_run_command's texts", async () => {
  const cases: [ReturnType<typeof fakeContext>, string][] = [
    [
      fakeContext({
        run: () => ({ code: 1, signal: null, output: new TextEncoder().encode("bad\n") }),
      }),
      "child process has failed to set user password: bad\n",
    ],
    [
      fakeContext({ run: () => ({ code: 2, signal: null, output: new Uint8Array() }) }),
      "child process has failed to set user password: exit status 2",
    ],
    [
      fakeContext({ run: () => ({ code: null, signal: "SIGKILL", output: new Uint8Array() }) }),
      "child process has terminated abnormally",
    ],
    [
      fakeContext({
        run: () => {
          throw new SysError("ENOENT", "No such file or directory");
        },
      }),
      "child process has failed to set user password: failed to exec '/usr/sbin/chpasswd': " +
      "No such file or directory\n",
    ],
  ];
  for (const [ctx, desc] of cases) {
    await assert.rejects(
      () =>
        runGaCommand(
          ctx,
          { program: "chpasswd", crypted: false, username: "u", password: "cHc=" },
          "set user password",
        ),
      qgaError(desc),
    );
  }
  const ok = fakeContext({ run: () => ({ code: 0, signal: null, output: new Uint8Array() }) });
  await runGaCommand(
    ok,
    { program: "hwclock", direction: "from-hardware" },
    "set hardware clock to system time",
  );
  assert.deepEqual(ok.runs, [{ argv: ["/sbin/hwclock", "-s"] }]);
});
