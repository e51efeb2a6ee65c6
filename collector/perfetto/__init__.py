"""Recordings from Perfetto traces (``anonanalyze import perfetto``,
docs/android.md): a trace of the kmem, sched, task and raw_syscalls ftrace
events, read with Perfetto's own protos, replayed through the collector's
classifier into the collector's schema.

- trace: the file, packet by packet (never whole in memory);
- facts: what the trace says about itself (machine, config, losses, clock);
- tasks: which process and command name each thread id is;
- replay: the kernel program's rules (bpf/anonscope.bpf.c) over the events;
- importer: drives them and writes the recording.
"""
