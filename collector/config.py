"""What one anoncollect run was asked to do."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class RunConfig:
    """The options of one anoncollect run, as the command line gave them."""
    output: str
    duration: Optional[float] = None
    command: List[str] = field(default_factory=list)
    system_wide: bool = False
    pid: Optional[int] = None
    comm: Optional[str] = None
    force: bool = False               # replace an existing output instead of keeping FILE.old
    raw_pointers: bool = False
    slab_interval: float = 5.0
    buffer_mb: int = 64
    max_live: int = 1 << 20
    perf_buffer: bool = False
    backend: str = "auto"             # auto, tracepoint, kprobe, fentry
    census: bool = True               # run the task_vma census at start where possible
    max_mb: Optional[float] = None    # stop once the committed segments reach this size (--max-mb)
    progress: bool = False
    quiet: bool = False               # no census line, no summary (-q)
    argv: List[str] = field(default_factory=list)

    @property
    def tracked(self) -> bool:
        """Whether only tracked processes are recorded: ``-p``, or a command
        without ``-a``."""
        return bool(self.pid or (self.command and not self.system_wide))

    def target(self) -> Dict[str, object]:
        """The metadata's ``target``: the mode (command, pid, comm or system)
        and the command, pid and comm given."""
        mode = "command" if self.command and not self.system_wide else \
            "pid" if self.pid else "comm" if self.comm else "system"
        return {"mode": mode, "command": self.command or None, "pid": self.pid, "comm": self.comm}
