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

# Where the guest kernel comes from (ANONSCOPE_VM_KERNEL): "stable" (the
# default: bookworm's, from the host's own apt lists, which carry the
# security suite) or "backports" (bookworm-backports, a newer kernel: 6.12
# in 2026), through a private apt configuration in the cache, so the host's
# apt sources are not changed. VM_APT holds the apt options for either.
vm_kernel_source() {
    VM_KERNEL=${ANONSCOPE_VM_KERNEL:-stable}
    VM_APT=()
    case $VM_KERNEL in
        stable) ;;
        backports)
            local d; d=$(vm_cache_root)/apt-backports
            mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
            echo "deb [arch=$VM_DEBARCH] $(vm_mirror) bookworm-backports main" > "$d/sources.list"
            VM_APT=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=-"
                    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
                    -o "APT::Architectures::=$VM_DEBARCH")
            # refreshed once a day
            if [ -z "$(find "$d/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
                apt-get "${VM_APT[@]}" update -qq || vm_die "cannot read bookworm-backports from $(vm_mirror)"
            fi ;;
        *) vm_die "ANONSCOPE_VM_KERNEL is '$VM_KERNEL': stable or backports" ;;
    esac
}

# The guest kernel: the ABI version Debian's linux-image-<flavour> points at.
vm_kernel_version() {
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
        echo "arch=$VM_ARCH kernel=$kver version=$kvers mirror=$(vm_mirror)"
        vm_python_requirements "$root"
        cat "$root/scripts/vm/common.sh" "$root/scripts/vm/build-image" \
            "$root/scripts/vm/initramfs-init" "$root/scripts/vm/guest-init"
    } | sha256sum | cut -c1-16
}
