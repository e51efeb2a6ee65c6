"""The clang flags bcc gets for a headers tree (collector/headers.py):
-fms-extensions for headers of 6.19 and later, found from the tree itself."""

from anonscope.collector import headers


def test_ms_extensions_from_6_19_on():
    assert headers.cflags("7.3.4+deb13-amd64") == headers.MS_EXTENSIONS
    assert headers.cflags("6.19.0") == headers.MS_EXTENSIONS
    assert headers.cflags("6.18.5-cloud-amd64") == []
    assert headers.cflags("6.1.0-56-amd64") == []
    assert headers.cflags("weird") == []


def test_the_release_is_the_trees_own(tmp_path):
    """A tree given to bcc (another kernel's headers) is judged by its own
    utsrelease.h, not by the running kernel's release."""
    tree = tmp_path / "usr/src/linux-headers-7.3.4+deb13-amd64"
    (tree / "include/generated").mkdir(parents=True)
    (tree / "include/generated/utsrelease.h").write_text('#define UTS_RELEASE "7.3.4+deb13-amd64"\n')
    other = headers.HeadersChoice(str(tree), "another kernel's", False)
    assert headers.tree_release(other, release="6.18.0") == "7.3.4+deb13-amd64"
    # bcc's own choice (/lib/modules/<release>/build) without the file: the running release
    own = headers.HeadersChoice(None, "matching", True)
    assert headers.tree_release(own, release="6.18.0", root=str(tmp_path)) == "6.18.0"
    build = tmp_path / "lib/modules/7.2.13+deb14-amd64/build/include/generated"
    build.mkdir(parents=True)
    (build / "utsrelease.h").write_text('#define UTS_RELEASE "7.2.13+deb14-amd64"\n')
    assert headers.tree_release(own, release="7.2.13+deb14-amd64", root=str(tmp_path)) == "7.2.13+deb14-amd64"
