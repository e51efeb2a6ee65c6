"""Read the BPF buffer on a thread of its own.

The buffer must be emptied continuously: while the writer encodes a row
group, a fork-heavy workload fills megabytes. This thread only drains and
keeps the bytes of each batch record (bcc calls back once per record, that
is once per BATCH events); each round it hands what it has, joined into one
bytes object, to the writer's thread through a queue. ctypes releases the
GIL while bcc copies, and pyarrow while it encodes, so the threads overlap.

The ring buffer is drained every DRAIN_S without waiting for wakeups: the
program submits with BPF_RB_NO_WAKEUP, because a wakeup per batch costs the
traced workload an interrupt and this thread a context switch each time.
The perf buffer (kernels before 5.8) is polled as usual.
"""

import ctypes
import queue
import threading
from typing import List

from . import events

POLL_MS = 50
DRAIN_S = 0.01


class BufferConsumer(threading.Thread):
    def __init__(self, bpf, ringbuf: bool, page_cnt: int, itemsize: int):
        super().__init__(name="anoncollect-buffer", daemon=True)
        self.bpf = bpf
        self.itemsize = itemsize
        self.ringbuf = ringbuf
        self.out: "queue.SimpleQueue[bytes]" = queue.SimpleQueue()
        self.perf_lost = 0
        self._chunks: List[bytes] = []
        self._halt = threading.Event()
        if ringbuf:
            bpf["events"].open_ring_buffer(self._on_record)
        else:
            bpf["events"].open_perf_buffer(self._on_record, page_cnt=page_cnt, lost_cb=self._on_lost)

    # Perf buffer samples are padded, so the size given can exceed the
    # record's: the record's own count says how many events it holds.
    def _on_record(self, _ctx, data, _size):
        n = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32))[0]
        self._chunks.append(ctypes.string_at(data + events.BATCH_HEAD_SIZE, n * self.itemsize))

    def _on_lost(self, count):
        self.perf_lost += count

    def _poll(self, timeout_ms: int) -> None:
        if self.ringbuf:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.perf_buffer_poll(timeout_ms)

    def _hand_over(self) -> None:
        if self._chunks:
            chunks, self._chunks = self._chunks, []
            self.out.put(b"".join(chunks))

    def run(self) -> None:
        while not self._halt.is_set():
            if self.ringbuf:
                self.bpf.ring_buffer_consume()
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
        else:
            for _ in range(3):
                self._poll(0)
        self._hand_over()

    def add(self, data: bytes) -> None:
        """Queue bytes read another way (batches left in the kernel map)."""
        if data:
            self.out.put(data)

    def take(self) -> List[bytes]:
        """Everything handed over so far."""
        items = []
        while True:
            try:
                items.append(self.out.get_nowait())
            except queue.Empty:
                return items
