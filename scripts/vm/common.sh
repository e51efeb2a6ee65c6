# Sourced by scripts/vm-test and scripts/vm/build-image: per-architecture
# settings, host packages, cache key. Not executable on its own.

vm_say() { echo "vm-test: $*" >&2; }
vm_die() { echo "vm-test: $*" >&2; exit 125; }

# vm_arch ARCH: sets the per-architecture variables.
vm_arch() {
    case "$1" in
        x86_64|amd64)
            VM_ARCH=x86_64; VM_DEBARCH=amd64; VM_KARCH_DIR=x86
            VM_QEMU_PKG=qemu-system-x86
            ;;
        arm64|aarch64)
            VM_ARCH=arm64; VM_DEBARCH=arm64; VM_KARCH_DIR=arm64
            VM_QEMU_PKG=qemu-system-arm
            ;;
        *) vm_die "unknown architecture '$1' (x86_64 or arm64)" ;;
    esac
    VM_NATIVE=0
    case "$(uname -m)" in
        x86_64) [ "$VM_ARCH" = x86_64 ] && VM_NATIVE=1 ;;
        aarch64) [ "$VM_ARCH" = arm64 ] && VM_NATIVE=1 ;;
    esac
    return 0
}

vm_cache_root() { echo "${ANONSCOPE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anonscope-vm}"; }

vm_mirror() {
    if [ -n "${ANONSCOPE_VM_MIRROR:-}" ]; then echo "$ANONSCOPE_VM_MIRROR"; return; fi
    # the host's own Debian mirror (the only network these machines have)
    local m
    m=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -v security | head -1 | tr -d ' ')
    echo "${m:-http://deb.debian.org/debian}"
}

# Host packages the harness needs, installed when missing.
vm_host_packages() {
    local pkgs="$VM_QEMU_PKG qemu-utils debootstrap cpio kmod e2fsprogs util-linux"
    [ "$VM_NATIVE" = 1 ] || pkgs="$pkgs qemu-user-static"
    local missing="" p
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ "$VM_DEBARCH" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$VM_DEBARCH"; then
        vm_say "adding the $VM_DEBARCH architecture to the host's dpkg (for the guest's kernel packages)"
        dpkg --add-architecture "$VM_DEBARCH"
        VM_NEED_UPDATE=1
    fi
    if [ -n "$missing" ] || [ -n "${VM_NEED_UPDATE:-}" ]; then
        vm_say "installing host packages:${missing:- (none, updating lists)}"
        apt-get update -qq
        VM_NEED_UPDATE=
        # shellcheck disable=SC2086
        [ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

# Where the guest kernel comes from (ANONSCOPE_VM_KERNEL):
#   stable            bookworm's (6.1), from the host's own apt lists (they
#                     carry the security suite, where its updates are)
#   backports         bookworm-backports (6.12 in 2026)
#   trixie            trixie's (6.12)
#   trixie-backports  trixie-backports (7.3 in 2026-12)
#   sid               unstable (7.2 in 2026-12)
#   a version         an ABI version or its start (7.3, 6.12.117+deb13):
#                     the first of the suites above that has it
# Every suite but stable is read through a private apt configuration in the
# cache (the host's apt sources are not changed). Sets VM_KERNEL, VM_APT (the
# apt options), VM_KSUITE (where the kernel is from), VM_SUITE (the guest's
# userland: bookworm for bookworm's kernels, trixie for the newer ones, sid's
# kernel included, whose userland moves every day; ANONSCOPE_VM_SUITE
# overrides) and VM_KPKG (the kernel package, with a version: the newest
# linux-image-<flavour> of the suite).
VM_KERNEL_SUITES="stable backports trixie trixie-backports sid"
vm_kernel_source() {
    VM_KERNEL=${ANONSCOPE_VM_KERNEL:-stable}
    case $VM_KERNEL in
        stable|backports|trixie|trixie-backports|sid) vm_kernel_suite "$VM_KERNEL" ;;
        [0-9]*) vm_kernel_by_version "$VM_KERNEL" ;;
        *) vm_die "ANONSCOPE_VM_KERNEL is '$VM_KERNEL': one of $VM_KERNEL_SUITES, or a kernel version" ;;
    esac
    case $VM_KSUITE in
        bookworm*) VM_SUITE=${ANONSCOPE_VM_SUITE:-bookworm} ;;
        *) VM_SUITE=${ANONSCOPE_VM_SUITE:-trixie} ;;
    esac
}

# vm_kernel_suite NAME: VM_APT and VM_KSUITE for one of VM_KERNEL_SUITES.
vm_kernel_suite() {
    VM_APT=()
    case $1 in
        stable) VM_KSUITE=bookworm; return 0 ;;
        backports) VM_KSUITE=bookworm-backports ;;
        *) VM_KSUITE=$1 ;;
    esac
    local d; d=$(vm_cache_root)/apt-$VM_KSUITE-$VM_DEBARCH
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    echo "deb [arch=$VM_DEBARCH] $(vm_mirror) $VM_KSUITE main" > "$d/sources.list"
    VM_APT=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
            -o "APT::Architectures::=$VM_DEBARCH" -o "APT::Sandbox::User=root")
    # refreshed once a day
    if [ -z "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
        apt-get "${VM_APT[@]}" update -qq || vm_die "cannot read $VM_KSUITE from $(vm_mirror)"
    fi
}

# vm_kernel_by_version V: the first suite whose lists have linux-image-V*
# (V whole: 6.1 is not 6.12) of this architecture's plain flavour (6.1.0-56-amd64, 7.3.4+deb13-amd64;
# not -rt-, -cloud-, -arm64-16k); sets VM_KVER_WANT to its ABI version.
vm_kernel_by_version() {
    local s k
    for s in $VM_KERNEL_SUITES; do
        vm_kernel_suite "$s"
        k=$(apt-cache "${VM_APT[@]}" pkgnames "linux-image-$1" 2>/dev/null \
            | grep -E "^linux-image-[0-9][^-]*(-[0-9]+)?-$VM_DEBARCH\$" | sed 's/^linux-image-//' \
            | grep -E "^$(echo "$1" | sed 's/[.+]/\\&/g')([^0-9]|\$)" | sort -V | tail -1)
        if [ -n "$k" ]; then VM_KVER_WANT=$k; return 0; fi
    done
    vm_die "no linux-image-$1*-$VM_DEBARCH in any of: $VM_KERNEL_SUITES"
}

# vm_apt_has PKG: the lists (host's or private) know PKG for the guest's architecture.
vm_apt_has() { apt-cache "${VM_APT[@]}" show "$1:$VM_DEBARCH" >/dev/null 2>&1; }

# The guest kernel: the ABI version Debian's linux-image-<flavour> points at.
vm_kernel_version() {
    if [ -n "${VM_KVER_WANT:-}" ]; then echo "$VM_KVER_WANT"; return; fi
    local k
    k=$(apt-cache "${VM_APT[@]}" depends "linux-image-$VM_DEBARCH:$VM_DEBARCH" 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); sub(":.*","",$2); print $2; exit}')
    if [ -z "$k" ]; then
        apt-get "${VM_APT[@]}" update -qq
        k=$(apt-cache "${VM_APT[@]}" depends "linux-image-$VM_DEBARCH:$VM_DEBARCH" 2>/dev/null \
            | awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); sub(":.*","",$2); print $2; exit}')
    fi
    [ -n "$k" ] || vm_die "cannot resolve linux-image-$VM_DEBARCH from the apt lists ($VM_KERNEL)"
    echo "$k"
}

# The guest's Python packages: the project's dependencies and test extra,
# read from pyproject.toml, plus pip and setuptools>=68 (editable install
# of the project inside the guest).
vm_python_requirements() {
    local root=$1
    python3 - "$root/pyproject.toml" <<'EOF'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
build = p.get("build-system", {}).get("requires", ["setuptools>=68"])
deps = p["project"].get("dependencies", []) + p["project"].get("optional-dependencies", {}).get("test", [])
for r in ["pip", "wheel", *build, *deps]:
    print(r)
EOF
}

# Cache key: everything that goes into the image.
vm_cache_key() {
    local root=$1 kver=$2 kvers
    kvers=$(apt-cache "${VM_APT[@]}" show "linux-image-$kver:$VM_DEBARCH" 2>/dev/null | awk '/^Version:/{print $2; exit}')
    {
        echo "arch=$VM_ARCH kernel=$kver version=$kvers mirror=$(vm_mirror) suite=$VM_SUITE"
        vm_python_requirements "$root"
        cat "$root/scripts/vm/common.sh" "$root/scripts/vm/build-image" \
            "$root/scripts/vm/initramfs-init" "$root/scripts/vm/guest-init"
    } | sha256sum | cut -c1-16
}
