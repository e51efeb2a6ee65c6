"""Read the BPF buffer on a thread of its own.

The buffer must be emptied continuously: while the writer encodes a row
group, a fork-heavy workload fills megabytes. This thread only drains and
copies the events of each batch record (bcc calls back once per record,
that is once per BATCH events) into one buffer per round, which it hands to
the writer's thread through a queue. ctypes releases the
GIL while bcc copies, and pyarrow while it encodes, so the threads overlap.

The ring buffer is drained every DRAIN_S without waiting for wakeups: the
program submits with BPF_RB_NO_WAKEUP, because a wakeup per batch costs the
traced workload an interrupt and this thread a context switch each time.
The perf buffer (kernels before 5.8) is polled as usual.

What waits for the writer is bounded (MAX_QUEUED bytes): when the writer
falls behind, this thread stops draining, the kernel's buffer fills and the
program counts what it cannot submit, per event kind (lost_by_event). So
memory stays bounded under any load, and every loss is counted.
"""

import ctypes
import queue
import threading
from typing import List, Optional

from . import abi

POLL_MS = 50
DRAIN_S = 0.01
#: Bytes handed over and not yet taken by the writer, at most (about half a
#: million events): past it the thread waits instead of draining.
MAX_QUEUED = 32 << 20
#: Bytes read from the ring buffer in one round at most: the record callback
#: then returns a negative value, on which libbpf's ring_buffer__consume()
#: stops (the record itself is consumed), so that one round of a full 64 MiB
#: buffer is not held twice in memory.
ROUND_BYTES = 4 << 20


class BufferConsumer(threading.Thread):
    """The thread that drains the BPF ring buffer (or perf buffer) and hands
    the events of its records over in a queue (:meth:`take`)."""

    def __init__(self, bpf, ringbuf: bool, page_cnt: int, itemsize: int):
        super().__init__(name="anoncollect-buffer", daemon=True)
        self.bpf = bpf
        self.itemsize = itemsize
        self.ringbuf = ringbuf
        self.out: "queue.SimpleQueue[bytes]" = queue.SimpleQueue()
        self.perf_lost = 0
        self._queued = 0                     # bytes in self.out
        self._lock = threading.Lock()
        self._round = bytearray()            # records read since the last hand-over
        self._halt = threading.Event()
        if ringbuf:
            bpf["events"].open_ring_buffer(self._on_record)
        else:
            bpf["events"].open_perf_buffer(self._on_record, page_cnt=page_cnt, lost_cb=self._on_lost)

    # Perf buffer samples are padded, so the size given can exceed the
    # record's: the record's own count says how many events it holds.
    def _on_record(self, _ctx, data, _size):
        n = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32))[0]
        self._round += (ctypes.c_char * (n * self.itemsize)).from_address(data + abi.BATCH_HEAD_SIZE)
        return -1 if self.ringbuf and len(self._round) >= ROUND_BYTES else 0

    def _on_lost(self, count):
        self.perf_lost += count

    def _poll(self, timeout_ms: int) -> None:
        if self.ringbuf:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.perf_buffer_poll(timeout_ms)

    def _hand_over(self) -> bool:
        """Queue this round's records; whether the round was cut at ROUND_BYTES."""
        full = len(self._round) >= ROUND_BYTES
        if self._round:
            data, self._round = self._round, bytearray()
            self._put(data)
        return full

    def _put(self, data: bytes) -> None:
        with self._lock:
            self._queued += len(data)
        self.out.put(data)

    def run(self) -> None:
        """Until :meth:`stop`: drain the ring buffer every DRAIN_S (or poll the
        perf buffer) and hand each round over, waiting while more than
        MAX_QUEUED bytes are queued."""
        while not self._halt.is_set():
            if self._queued > MAX_QUEUED:    # the writer is behind: let the kernel count losses
                self._halt.wait(DRAIN_S)
                continue
            if self.ringbuf:
                self.bpf.ring_buffer_consume()
                if not self._hand_over():    # drained: wait for more
                    self._halt.wait(DRAIN_S)
            else:
                self._poll(POLL_MS)
                self._hand_over()

    def stop(self) -> None:
        """Stop polling; then ``drain`` reads what is left."""
        self._halt.set()
        self.join()

    def drain(self) -> None:
        """Read everything left in the buffer (after ``stop``)."""
        if self.ringbuf:
            self.bpf.ring_buffer_consume()
            while self._hand_over():
                self.bpf.ring_buffer_consume()
        else:
            for _ in range(3):
                self._poll(0)
            self._hand_over()

    def add(self, data: bytes) -> None:
        """Queue bytes read another way (batches left in the kernel map)."""
        if data:
            self._put(data)

    def take(self, max_bytes: Optional[int] = None) -> List[bytes]:
        """What was handed over, in order: everything, or the first items
        that reach ``max_bytes``."""
        items, size = [], 0
        while max_bytes is None or size < max_bytes:
            try:
                items.append(self.out.get_nowait())
            except queue.Empty:
                break
            size += len(items[-1])
        with self._lock:
            self._queued -= size
        return items
