"""The picker's gRPC server takes a burst of new ext_proc streams while its event loop is busy: every request holds
one stream, so a burst of requests is a burst of streams, and gRPC's default backlog (random refusals from 1,000
streams waiting, all refused from 3,000) would fail some of them with RESOURCE_EXHAUSTED, which Envoy answers 503."""

import asyncio
import json
import subprocess
import sys
import time

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

from picker.server.service import Listen, PickerServer

BURST = 1500  # over gRPC's default soft limit (1,000), where half of the streams past it would be refused

CLIENT = """
import asyncio, json, sys
import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

async def main(port, count):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        calls = [stub.Process() for _ in range(count)]
        headers = pb.ProcessingRequest(request_headers=pb.HttpHeaders(end_of_stream=True))
        sent = await asyncio.gather(*(call.write(headers) for call in calls), return_exceptions=True)
        print("opened", flush=True)

        async def outcome(call, error):
            try:
                if error is not None:
                    raise error
                await call.read()
                await call.done_writing()
                return "ok"
            except grpc.aio.AioRpcError as failure:
                return failure.code().name
            except Exception as failure:
                return type(failure).__name__

        outcomes = await asyncio.gather(*(outcome(call, error) for call, error in zip(calls, sent)))
        print(json.dumps({name: outcomes.count(name) for name in set(outcomes)}), flush=True)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


class Answering(ext_proc_grpc.ExternalProcessorServicer):
    """Answers each stream's request headers once."""

    async def Process(self, request_iterator, context):
        async for _ in request_iterator:
            yield pb.ProcessingResponse(request_headers=pb.HeadersResponse())
            return


async def test_a_burst_of_streams_that_waits_for_the_event_loop_is_not_refused():
    server = PickerServer(Answering(), Listen(host="127.0.0.1", grpc_port=0, health_port=0))
    await server.start()
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(server.grpc_port), str(BURST)], stdout=subprocess.PIPE, text=True
    )
    try:
        # the event loop is held until every stream has been sent, so they all wait in gRPC's backlog
        assert client.stdout.readline().strip() == "opened"
        time.sleep(0.5)  # and have reached the server
        line = await asyncio.to_thread(client.stdout.readline)
        assert client.wait(60) == 0
    finally:
        client.kill()
        await server.stop(0)
    assert json.loads(line) == {"ok": BURST}  # none refused (RESOURCE_EXHAUSTED) by the backlog
