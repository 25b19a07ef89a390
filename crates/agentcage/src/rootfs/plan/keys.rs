//! The planner's path keys: byte strings whose order is `Path`'s component order, so that the
//! set of known directories is searched and cut with memcmp instead of re-parsing paths.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `p` as a key whose byte order is `Path`'s component order: each component as a NUL (no
/// path contains one, and it sorts below every other byte) followed by its bytes; `/` is the
/// empty key. Equal paths (`/a//b/`, `/a/b`) get equal keys, a dir's parent is its key cut at
/// its last NUL, and the dirs below it are the keys that start with its key and a NUL, which
/// sort right after it (the order of `Path`s, for the plan's paths: absolute, no `..`).
/// Comparing `PathBuf`s re-parses both paths' components at every step of a tree search:
/// that was most of the plan's instructions.
/// Split on `/` by bytes, as `Path::components` would (empty and `.` components dropped, but
/// a leading `.` of a relative path kept): `Components` was a third of the plan's
/// instructions.
pub(super) fn dir_key(p: &Path) -> Vec<u8> {
    let b = p.as_os_str().as_bytes();
    let mut k = Vec::with_capacity(b.len() + 1);
    for (i, name) in b.split(|&c| c == b'/').enumerate() {
        if name.is_empty() || (name == b"." && i > 0) {
            continue;
        }
        k.push(0);
        k.extend_from_slice(name);
    }
    k
}

/// The inside path of a [`dir_key`] under `prefix`, as the mount plan names it.
pub(super) fn key_cpath(prefix: &str, k: &[u8]) -> CString {
    let mut v = Vec::with_capacity(prefix.len() + k.len() + 2);
    v.extend_from_slice(prefix.as_bytes());
    if k.is_empty() {
        v.push(b'/');
    }
    v.extend(k.iter().map(|&b| if b == 0 { b'/' } else { b }));
    CString::new(v).unwrap_or_else(|_| c"/nonexistent".to_owned())
}

/// Whether the dir of key `k` is strictly below the dir of key `anc`.
pub(super) fn key_below(k: &[u8], anc: &[u8]) -> bool {
    k.len() > anc.len() && k.starts_with(anc) && k[anc.len()] == 0
}

/// Whether `p` lies strictly below `anc`, both canonical (absolute, no `.`, `..`, `//` or
/// trailing `/`), by bytes: `Path::starts_with` re-parses components.
pub(super) fn strictly_below(p: &Path, anc: &Path) -> bool {
    let (p, a) = (p.as_os_str().as_bytes(), anc.as_os_str().as_bytes());
    p.len() > a.len() && p.starts_with(a) && (a == b"/" || p[a.len()] == b'/')
}

/// The path of a [`dir_key`].
pub(super) fn key_path(k: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    if k.is_empty() {
        return PathBuf::from("/");
    }
    PathBuf::from(std::ffi::OsString::from_vec(
        k.iter().map(|&b| if b == 0 { b'/' } else { b }).collect(),
    ))
}

/// The key of the parent dir of `k` (the root's parent is the root).
pub(super) fn parent_key(k: &[u8]) -> &[u8] {
    &k[..k.iter().rposition(|&b| b == 0).unwrap_or(0)]
}

/// `k` as a path string, for test assertions.
#[cfg(test)]
pub(super) fn key_str(k: &[u8]) -> String {
    key_cpath("", k).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    #[test]
    fn dir_key_is_the_components_key() {
        let by_components = |p: &Path| {
            let mut k = Vec::new();
            for c in p.components() {
                let name: &[u8] = match c {
                    Component::Normal(s) => s.as_bytes(),
                    Component::ParentDir => b"..",
                    Component::CurDir => b".",
                    Component::RootDir | Component::Prefix(_) => continue,
                };
                k.push(0);
                k.extend_from_slice(name);
            }
            k
        };
        for p in [
            "/",
            "//",
            "/a",
            "/a/",
            "/a//b",
            "/a/./b",
            "/./a",
            "/a/..",
            "/a/../b/.",
            ".",
            "./a",
            "a/.",
            "a/./.",
            "..",
            "../a",
            "",
            "/.a/..b/...",
            "/a/b/c/d",
        ] {
            assert_eq!(dir_key(Path::new(p)), by_components(Path::new(p)), "{p:?}");
        }
    }

    #[test]
    fn keys_order_and_compare_like_paths() {
        let paths = [
            "/", "/a", "/a/", "/a//b", "/a/b", "/a/b/c", "/a-b", "/a.b", "/a b", "/ab", "/b",
            "/a/z", "/0", "/\u{1}", "/a/\u{1}", "/a/./b", "/\u{e9}", "/A",
        ];
        for x in paths {
            for y in paths {
                let (px, py) = (Path::new(x), Path::new(y));
                assert_eq!(dir_key(px).cmp(&dir_key(py)), px.cmp(py), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn key_helpers_name_the_path_and_its_parent() {
        let k = dir_key(Path::new("/tmp//ws/.git/"));
        assert_eq!(key_str(&k), "/tmp/ws/.git");
        assert_eq!(key_cpath("/p", &k).as_bytes(), b"/p/tmp/ws/.git");
        assert_eq!(key_str(parent_key(&k)), "/tmp/ws");
        assert_eq!(key_str(parent_key(parent_key(parent_key(&k)))), "/");
        assert_eq!(parent_key(&[]), b"");
        assert_eq!(key_cpath("/p", &[]).as_bytes(), b"/p/");
    }

    #[test]
    fn strictly_below_is_by_whole_components() {
        let b = |p: &str, a: &str| strictly_below(Path::new(p), Path::new(a));
        assert!(b("/w/.git", "/w") && b("/w", "/"));
        assert!(!b("/w", "/w") && !b("/wx/.git", "/w") && !b("/w", "/w/.git"));
    }

    #[test]
    fn key_below_is_strictly_below_by_components() {
        let below = |a: &str, b: &str| key_below(&dir_key(Path::new(a)), &dir_key(Path::new(b)));
        assert!(below("/w/x", "/w"));
        assert!(below("/w/x/y", "/w"));
        assert!(below("/w", "/"));
        assert!(!below("/w", "/w"));
        assert!(!below("/wx", "/w"));
        assert!(!below("/w-x/y", "/w"));
        assert!(!below("/", "/"));
        assert!(!below("/v/x", "/w"));
        assert_eq!(
            key_path(&dir_key(Path::new("/a//b/"))),
            PathBuf::from("/a/b")
        );
        assert_eq!(key_path(&[]), PathBuf::from("/"));
    }
}
