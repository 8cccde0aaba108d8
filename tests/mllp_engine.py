"""A real MLLP listener standing in for a hospital's HL7 interface engine, for tests.

Built on the independent `hl7` package's asyncio MLLP server, run in a thread with its
own event loop. A `script` decides, message by message, what the engine does:
"AA" accept, "AE" application error, "AR" reject ("AE:some text" puts the text in MSA-3),
"drop" close the connection without answering, "slow" take the message but answer AA only
after `slow_seconds` (a client with a shorter timeout gives up first), "AA-other" answer
AA with another message's control id in MSA-2 (a confused engine). After the script runs
out, every message is accepted. `delay_seconds` delays every answer (to make concurrent
senders overlap). `received` lists the parsed messages in arrival order (including ones
answered AE/AR or dropped), and `accepted_control_ids` the MSH-10 of those answered AA
(including "slow" ones: the engine took them even if the client stopped waiting): what
the engine really took.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import hl7
from hl7.mllp import start_hl7_server


class FakeInterfaceEngine:
    def __init__(self, script: Iterable[str] = (), *, slow_seconds: float = 2.0, delay_seconds: float = 0.0) -> None:
        self.script = list(script)
        self.slow_seconds = slow_seconds
        self.delay_seconds = delay_seconds
        self.received: list[hl7.Message] = []
        self.accepted_control_ids: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server = None
        self._writers: set = set()

    # ---- lifecycle -----------------------------------------------------------
    def __enter__(self) -> "FakeInterfaceEngine":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MLLP test listener did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the listener and every open connection before the loop stops."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            start_hl7_server(self._handle, "127.0.0.1", 0, encoding="utf-8")
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    # ---- behaviour -------------------------------------------------------------
    async def _handle(self, reader, writer) -> None:
        self._writers.add(writer)
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                self.received.append(message)
                action = self.script.pop(0) if self.script else "AA"
                if action == "drop":
                    writer.close()
                    return
                code, _, text = action.partition(":")
                control_id = str(message.segment("MSH")(10))
                if code in ("AA", "slow"):  # taken as soon as it is read, however late the ACK
                    self.accepted_control_ids.append(control_id)
                await asyncio.sleep(self.slow_seconds if code == "slow" else self.delay_seconds)
                ack = message.create_ack(ack_code="AA" if code in ("slow", "AA-other") else code)
                if code == "AA-other":
                    ack.segment("MSA").assign_field(f"NOT-{control_id}", 2)
                if text:
                    ack.segment("MSA").assign_field(text, 3)
                writer.writemessage(ack)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
