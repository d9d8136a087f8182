#!/usr/bin/env python3
"""Record a canonical, deterministic transcript of one MCP session with server-everything.

Usage:
  transcript.py [--extra-tool NAME]... stdio -- <command> [args...]
  transcript.py [--extra-tool NAME]... http <url>

Drives a fixed sequence (initialize, tools, resources, prompts, progress,
cancellation, sampling, elicitation, roots, ping) with the official Python MCP
client and prints the normalized transcript as canonical JSON (sorted keys,
indent 2) on stdout. Any failed check exits 1 with a message on stderr.

--extra-tool NAME: NAME must be in tools/list (a gateway's own tool, e.g.
intentproof_declare_plan); it is checked, then left out of the transcript so
that a transcript through a transparent gateway equals the direct one.
See tests/mcp/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # keep tests/mcp/__pycache__ out of the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio  # noqa: E402

from _harness import (  # noqa: E402
    await_initial_roots,
    ROOT_URI,
    STEP_TIMEOUT_S,
    ClientSession,
    HarnessError,
    McpError,
    Recorder,
    canonical,
    connect,
    describe_exc,
    dump,
    flatten_exc,
    normalize,
    parse_target,
    types,
)

PROG = "transcript.py"

# Tools of server-everything that the sequence below calls; the last three are
# registered only once the client declared sampling/elicitation/roots.
REQUIRED_TOOLS = [
    "echo",
    "get-sum",
    "trigger-long-running-operation",
    "trigger-sampling-request",
    "trigger-elicitation-request",
    "get-roots-list",
]

# Progress run: 3 steps of 0.2 s.
PROGRESS_ARGS = {"duration": 0.6, "steps": 3}
# Cancel run: 3 steps of 1 s; cancelled right after the first progress
# notification. server-everything's tool ignores the abort signal, so it keeps
# emitting progress until its natural end (3 s) but, having seen the cancel,
# its SDK suppresses the final response. CANCEL_WINDOW_S after the cancel is
# well past that natural end, so a response in the window means the server
# never saw the cancel. (A short "long" run keeps its stray progress from
# leaking into later steps.)
CANCEL_ARGS = {"duration": 3, "steps": 3}
CANCEL_WINDOW_S = 3.5
CANCEL_REASON = "intentproof transcript: client cancelled after first progress"

ROOTS_WAIT_S = 5.0

# Server notifications that a server may emit racily with respect to the
# client's steps (and, over Streamable HTTP, only if the standalone GET stream
# was already open): kept out of the transcript, counted on stderr.
RACY_NOTIFICATIONS = {
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
}


class Run:
    def __init__(self, session: ClientSession, rec: Recorder) -> None:
        self.session = session
        self.rec = rec
        self.steps: list[dict[str, Any]] = []
        self.dropped: dict[str, int] = {}

    def _events(self) -> list[dict[str, Any]]:
        out = []
        for ev in self.rec.drain():
            m = ev.get("notification")
            if m in RACY_NOTIFICATIONS:
                self.dropped[m] = self.dropped.get(m, 0) + 1
                continue
            out.append(ev)
        return out

    async def step(self, name: str, fn) -> dict[str, Any]:
        try:
            with anyio.fail_after(STEP_TIMEOUT_S):
                body = await fn()
        except HarnessError as e:
            raise HarnessError(f"step {name}: {e}") from None
        except TimeoutError:
            raise HarnessError(f"step {name}: no answer within {STEP_TIMEOUT_S:g}s") from None
        except Exception as e:  # McpError, transport errors, validation errors
            raise HarnessError(f"step {name}: {describe_exc(e)}") from None
        entry = {"step": name, **body}
        events = self._events()
        if events:
            entry["server_events"] = events
        self.steps.append(entry)
        return entry

    # ---- helpers ----

    async def call_ok(self, tool: str, args: dict[str, Any], **kw) -> dict[str, Any]:
        res = await self.session.call_tool(tool, args, **kw)
        d = dump(res)
        if res.isError:
            raise HarnessError(f"tool {tool} returned isError: {d}")
        return d

    @staticmethod
    def text_of(result: dict[str, Any]) -> str:
        return "\n".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")


async def drive(session: ClientSession, rec: Recorder, extra_tools: list[str]) -> dict[str, Any]:
    run = Run(session, rec)

    # 1. initialize, then the server's own roots/list request (sent ~350 ms
    #    after notifications/initialized) and the log line it emits afterwards.
    async def initialize():
        init = await session.initialize()
        missing = await await_initial_roots(rec, ROOTS_WAIT_S)
        if missing:
            raise HarnessError(missing)
        instr = init.instructions
        return {
            "protocolVersion": init.protocolVersion,
            "serverInfo": dump(init.serverInfo),
            "capabilities": dump(init.capabilities),
            "instructions": instr,  # long: digested by normalize()
        }

    await run.step("initialize", initialize)

    # 2. tools/list (all pages), sorted by name.
    async def list_tools():
        tools, cursor = [], None
        while True:
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise HarnessError(f"duplicate tool names in tools/list: {sorted(names)}")
        for t in extra_tools:
            if t not in names:
                raise HarnessError(f"expected extra tool {t!r} is not in tools/list ({sorted(names)})")
        missing = [t for t in REQUIRED_TOOLS if t not in names]
        if missing:
            raise HarnessError(f"tools/list lacks {missing} (did the client capabilities reach the server?)")
        kept = sorted((t for t in tools if t.name not in extra_tools), key=lambda t: t.name)
        return {"names": [t.name for t in kept], "tools": [dump(t) for t in kept]}

    await run.step("tools/list", list_tools)

    # 3. echo
    async def echo():
        r = await run.call_ok("echo", {"message": "hello"})
        if run.text_of(r) != "Echo: hello":
            raise HarnessError(f"unexpected echo result {r}")
        return {"result": r}

    await run.step("tools/call echo", echo)

    # 4. get-sum (arguments a, b)
    async def get_sum():
        r = await run.call_ok("get-sum", {"a": 2, "b": 3})
        if "5" not in run.text_of(r):
            raise HarnessError(f"unexpected get-sum result {r}")
        return {"result": r}

    await run.step("tools/call get-sum", get_sum)

    # 5. resources/list + read the first listed resource
    async def read_resource():
        res, cursor = [], None
        while True:
            page = await session.list_resources(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            res.extend(page.resources)
            cursor = page.nextCursor
            if not cursor:
                break
        if not res:
            raise HarnessError("resources/list is empty")
        first = res[0]
        read = await session.read_resource(first.uri)
        if not read.contents:
            raise HarnessError(f"resources/read {first.uri} returned no contents")
        return {"listed": [dump(r) for r in res], "read_uri": str(first.uri), "read": dump(read)}

    await run.step("resources/list+read", read_resource)

    # 6. resources/templates/list
    async def templates():
        r = await session.list_resource_templates()
        return {"result": dump(r)}

    await run.step("resources/templates/list", templates)

    # 7. prompts/list + prompts/get (simple-prompt, else the first, with its required args)
    async def prompt():
        lst = await session.list_prompts()
        if not lst.prompts:
            raise HarnessError("prompts/list is empty")
        chosen = next((p for p in lst.prompts if p.name == "simple-prompt"), None)
        chosen = chosen or next((p for p in lst.prompts if not any(a.required for a in p.arguments or [])), None)
        chosen = chosen or lst.prompts[0]
        args = {a.name: "test" for a in (chosen.arguments or []) if a.required}
        got = await session.get_prompt(chosen.name, args or None)
        return {"listed": [p.name for p in lst.prompts], "name": chosen.name, "arguments": args, "result": dump(got)}

    await run.step("prompts/get", prompt)

    # 8. progress: every notification through the callback, and the token on the wire.
    async def progress():
        seen: list[dict[str, Any]] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            seen.append({"progress": p, "total": total, "message": message})

        token = session._request_id  # the SDK uses the request id as the progress token
        r = await run.call_ok("trigger-long-running-operation", PROGRESS_ARGS, progress_callback=on_progress)
        tokens = sorted(
            {
                (e.get("params") or {}).get("progressToken")
                for e in rec.events
                if e.get("notification") == "notifications/progress"
            },
            key=repr,
        )
        if tokens != [token]:
            raise HarnessError(f"progress tokens on the wire {tokens} != the client's own token {token!r}")
        if len(seen) != PROGRESS_ARGS["steps"]:
            raise HarnessError(f"expected {PROGRESS_ARGS['steps']} progress callbacks, got {seen}")
        return {"arguments": PROGRESS_ARGS, "client_progress_token": token, "progress": seen, "result": r}

    await run.step("progress", progress)

    # 9. cancellation from the client after the first progress notification.
    async def cancel():
        rid = session._request_id
        before: list[float] = []
        after: list[float] = []
        first = anyio.Event()
        finished = anyio.Event()
        outcome: dict[str, Any] = {}
        cancelled = False

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            (after if cancelled else before).append(p)
            first.set()

        async def call() -> None:
            try:
                r = await session.call_tool("trigger-long-running-operation", CANCEL_ARGS, progress_callback=on_progress)
                outcome["response_after_cancel"] = dump(r)
            except McpError as e:
                outcome["error_after_cancel"] = {"code": e.error.code, "message": e.error.message}
            finally:
                finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(10):
                await first.wait()
            cancelled = True
            await session.send_notification(
                types.ClientNotification(
                    types.CancelledNotification(
                        params=types.CancelledNotificationParams(requestId=rid, reason=CANCEL_REASON)
                    )
                )
            )
            with anyio.move_on_after(CANCEL_WINDOW_S):
                await finished.wait()
            tg.cancel_scope.cancel()  # the client gives up on the request

        if "response_after_cancel" in outcome:
            raise HarnessError(
                f"server answered request {rid} after notifications/cancelled (cancel not delivered?): "
                f"{outcome['response_after_cancel']}"
            )
        if "error_after_cancel" in outcome:
            raise HarnessError(f"server answered cancelled request {rid} with an error: {outcome['error_after_cancel']}")
        # The session must still be usable afterwards.
        await session.send_ping()
        return {
            "arguments": CANCEL_ARGS,
            "cancelled_request_id": rid,
            "reason": CANCEL_REASON,
            "progress_before_cancel": before,
            "progress_after_cancel": after,
            "client_observed": f"no response within {CANCEL_WINDOW_S:g}s after notifications/cancelled; "
            "request abandoned client-side; session still answers ping",
        }

    await run.step("cancel", cancel)

    # 10. server->client sampling
    async def sampling():
        r = await run.call_ok("trigger-sampling-request", {"prompt": "hello from intentproof", "maxTokens": 16})
        if "sampled: " not in run.text_of(r):
            raise HarnessError(f"sampling answer did not reach the tool result: {r}")
        return {"result": r}

    await run.step("tools/call trigger-sampling-request", sampling)

    # 11. server->client elicitation
    async def elicitation():
        r = await run.call_ok("trigger-elicitation-request", {})
        if "User provided the requested information" not in run.text_of(r):
            raise HarnessError(f"elicitation answer did not reach the tool result: {r}")
        return {"result": r}

    await run.step("tools/call trigger-elicitation-request", elicitation)

    # 12. roots as seen by the server
    async def roots():
        r = await run.call_ok("get-roots-list", {})
        if ROOT_URI not in run.text_of(r):
            raise HarnessError(f"the server does not see the client's root {ROOT_URI}: {r}")
        return {"result": r}

    await run.step("tools/call get-roots-list", roots)

    # 13. ping
    async def ping():
        r = await session.send_ping()
        return {"result": dump(r)}

    await run.step("ping", ping)

    if run.dropped:
        sys.stderr.write(f"{PROG}: left out of the transcript (racy): {run.dropped}\n")
    return {"transcript_version": 1, "steps": run.steps}


async def amain(transport: str, target: list[str], extra_tools: list[str]) -> dict[str, Any]:
    rec = Recorder()
    result: dict[str, Any] = {}
    async with connect(transport, target, rec) as session:
        result = await drive(session, rec, extra_tools)
    return result


def main(argv: list[str]) -> int:
    transport, target, opts = parse_target(argv, PROG, "[--extra-tool NAME]... ")
    extra: list[str] = []
    it = iter(opts)
    for o in it:
        if o == "--extra-tool":
            extra.append(next(it, ""))
        elif o.startswith("--extra-tool="):
            extra.append(o.split("=", 1)[1])
        else:
            sys.stderr.write(f"{PROG}: unknown option {o}\n")
            return 2
    try:
        out = anyio.run(amain, transport, target, extra)
    except HarnessError as e:
        sys.stderr.write(f"{PROG}: FAIL: {e}\n")
        return 1
    except BaseException as e:  # noqa: BLE001 - report anything, exit non-zero
        inner = [x for x in flatten_exc(e) if isinstance(x, HarnessError)]
        msg = str(inner[0]) if inner else describe_exc(e)
        sys.stderr.write(f"{PROG}: FAIL: {msg}\n")
        return 1
    sys.stdout.write(canonical(normalize(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
