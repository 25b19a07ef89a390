//! Two static, libc-free x86_64 programs the bench carries as hand-assembled bytes.
//!
//! **`true`** (129 bytes): `exit_group(0)` and nothing else. `/bin/true` is a dynamically
//! linked glibc program whose own start-up (the dynamic loader, relocations and glibc's CPU
//! feature detection, which costs about 0.65 ms on a VM whose CPUID traps to the hypervisor)
//! would dominate the sandbox overhead we want to measure. With this `true`, launch-to-exit
//! time of a sandbox is the sandbox's own cost plus one `execve` of a one-page file.
//!
//! **`rss-probe`** (274 bytes): `rss-probe CMD [ARGS]...` runs CMD (an absolute path) and
//! writes CMD's `ru_maxrss` (KiB, 8 bytes little-endian) to stdout after it exits; its exit code
//! is CMD's (128+N for signal N, 127 if CMD cannot be executed, 125 if `vfork`/`wait4` fail).
//! Why: the kernel charges a process's peak RSS from the address space it had *before* `execve`
//! too. The bench spawns with `posix_spawn` (a `vfork`-style clone sharing the bench's memory),
//! so `wait4` on a launcher started by the bench reports at least the bench's own RSS (several
//! MiB). Started from this probe instead, the pre-exec address space is the probe's two pages.
//!
//! Both share one layout (all little-endian; one `PT_LOAD` segment maps the whole file at
//! `0x400000`, and execution starts right after the headers):
//!
//! | offset | size | contents |
//! | ---: | ---: | --- |
//! | 0   | 64 | ELF64 header: `7f 'E' 'L' 'F'`, class 2 (64-bit), data 1 (LE), version 1, ABI 0; `e_type` 2 (`ET_EXEC`), `e_machine` 0x3e (x86-64), `e_version` 1, `e_entry` 0x400078, `e_phoff` 64, `e_shoff` 0, `e_flags` 0, `e_ehsize` 64, `e_phentsize` 56, `e_phnum` 1, `e_shentsize` 64, `e_shnum` 0, `e_shstrndx` 0 |
//! | 64  | 56 | program header: `p_type` 1 (`PT_LOAD`), `p_flags` 5 (R+X), `p_offset` 0, `p_vaddr` = `p_paddr` = 0x400000, `p_filesz` = `p_memsz` = file size, `p_align` 0x1000 |
//! | 120 | .. | code, see [`TRUE_CODE`] and [`RSS_PROBE_CODE`] |
//!
//! There is no `PT_GNU_STACK` header: since Linux 5.8 its absence no longer implies
//! `READ_IMPLIES_EXEC` on x86_64, and neither program runs code from its stack.
//! The bytes are x86_64 Linux machine code; [`native`] says whether this host can run them.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Virtual address the single segment is mapped at (above any `vm.mmap_min_addr`).
const BASE: u64 = 0x40_0000;
/// Size of the ELF64 header.
const EHDR_SIZE: u16 = 64;
/// Size of one ELF64 program header.
const PHDR_SIZE: u16 = 56;
/// Offset of the code in the file (right after the two headers).
const CODE_OFFSET: u16 = EHDR_SIZE + PHDR_SIZE;

/// `true`: `exit_group(0)`.
///
/// ```text
/// 31 ff                xor  edi, edi
/// b8 e7 00 00 00       mov  eax, 231        ; __NR_exit_group
/// 0f 05                syscall
/// ```
pub const TRUE_CODE: [u8; 9] = [0x31, 0xff, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// `rss-probe`: vfork, exec argv\[1\] in the child, wait4 in the parent, write `ru_maxrss`.
/// At entry `[rsp]` is argc, `[rsp+8]` argv\[0\], `[rsp+16]` argv\[1\], and envp starts at
/// `rsp + 16 + 8*argc`. The vfork child only reads memory and makes system calls, so sharing
/// the stack with the suspended parent is safe. Assembled with GNU as (Intel syntax):
///
/// ```text
/// 00 b8 3a 00 00 00          mov  eax, 58                ; vfork
/// 05 0f 05                   syscall
/// 07 85 c0                   test eax, eax
/// 09 75 26                   jnz  parent (0x31)
/// 0b 48 8b 7c 24 10          mov  rdi, [rsp+16]          ; child: path = argv[1]
/// 10 48 8d 74 24 10          lea  rsi, [rsp+16]          ; argv = &argv[1]
/// 15 48 8b 04 24             mov  rax, [rsp]             ; argc
/// 19 48 8d 54 c4 10          lea  rdx, [rsp+rax*8+16]    ; envp
/// 1e b8 3b 00 00 00          mov  eax, 59                ; execve
/// 23 0f 05                   syscall
/// 25 bf 7f 00 00 00          mov  edi, 127               ; exec failed
/// 2a b8 3c 00 00 00          mov  eax, 60                ; exit (the vfork child)
/// 2f 0f 05                   syscall
/// 31 78 5b                   parent: js fail (0x8e)      ; vfork failed
/// 33 89 c7                   mov  edi, eax               ; pid
/// 35 48 81 ec 00 01 00 00    sub  rsp, 256               ; status at [rsp], rusage at [rsp+16]
/// 3c 48 89 e6                mov  rsi, rsp
/// 3f 31 d2                   xor  edx, edx
/// 41 4c 8d 54 24 10          lea  r10, [rsp+16]
/// 46 b8 3d 00 00 00          mov  eax, 61                ; wait4(pid, &status, 0, &rusage)
/// 4b 0f 05                   syscall
/// 4d 48 85 c0                test rax, rax
/// 50 78 3c                   js   fail (0x8e)
/// 52 bf 01 00 00 00          mov  edi, 1
/// 57 48 8d 74 24 30          lea  rsi, [rsp+48]          ; &rusage.ru_maxrss (offset 32)
/// 5c ba 08 00 00 00          mov  edx, 8
/// 61 b8 01 00 00 00          mov  eax, 1                 ; write(1, .., 8)
/// 66 0f 05                   syscall
/// 68 8b 3c 24                mov  edi, [rsp]             ; status
/// 6b f7 c7 7f 00 00 00       test edi, 0x7f              ; WTERMSIG
/// 71 75 0b                   jnz  signalled (0x7e)
/// 73 c1 ef 08                shr  edi, 8                 ; WEXITSTATUS
/// 76 81 e7 ff 00 00 00       and  edi, 0xff
/// 7c eb 09                   jmp  out (0x87)
/// 7e 83 e7 7f                signalled: and edi, 0x7f
/// 81 81 c7 80 00 00 00       add  edi, 128
/// 87 b8 e7 00 00 00          out: mov eax, 231           ; exit_group(code)
/// 8c 0f 05                   syscall
/// 8e bf 7d 00 00 00          fail: mov edi, 125
/// 93 b8 e7 00 00 00          mov  eax, 231
/// 98 0f 05                   syscall
/// ```
pub const RSS_PROBE_CODE: [u8; 154] = [
    0xb8, 0x3a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x85, 0xc0, 0x75, 0x26, 0x48, 0x8b, 0x7c, 0x24, 0x10,
    0x48, 0x8d, 0x74, 0x24, 0x10, 0x48, 0x8b, 0x04, 0x24, 0x48, 0x8d, 0x54, 0xc4, 0x10, 0xb8, 0x3b,
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x0f,
    0x05, 0x78, 0x5b, 0x89, 0xc7, 0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00, 0x48, 0x89, 0xe6, 0x31,
    0xd2, 0x4c, 0x8d, 0x54, 0x24, 0x10, 0xb8, 0x3d, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0,
    0x78, 0x3c, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x74, 0x24, 0x30, 0xba, 0x08, 0x00, 0x00,
    0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x8b, 0x3c, 0x24, 0xf7, 0xc7, 0x7f, 0x00, 0x00,
    0x00, 0x75, 0x0b, 0xc1, 0xef, 0x08, 0x81, 0xe7, 0xff, 0x00, 0x00, 0x00, 0xeb, 0x09, 0x83, 0xe7,
    0x7f, 0x81, 0xc7, 0x80, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7d,
    0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

/// Size of the `true` image.
pub const TRUE_LEN: usize = CODE_OFFSET as usize + TRUE_CODE.len();

/// The `true` image (129 bytes).
pub fn static_true() -> Vec<u8> {
    image(&TRUE_CODE)
}

/// The `rss-probe` image (274 bytes).
pub fn rss_probe() -> Vec<u8> {
    image(&RSS_PROBE_CODE)
}

/// An ELF64 executable whose single segment is the headers followed by `code`, entered at the
/// first byte of `code`.
pub fn image(code: &[u8]) -> Vec<u8> {
    let len = (usize::from(CODE_OFFSET) + code.len()) as u64;
    let mut b = Vec::with_capacity(len as usize);
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV, ABI version, padding.
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&(BASE + u64::from(CODE_OFFSET)).to_le_bytes()); // e_entry
    b.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no section headers
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&EHDR_SIZE.to_le_bytes()); // e_ehsize
    b.extend_from_slice(&PHDR_SIZE.to_le_bytes()); // e_phentsize
    b.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // Program header: one read+execute PT_LOAD of the whole file.
    b.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // p_flags: PF_R | PF_X
    b.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    b.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    b.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    b.extend_from_slice(&len.to_le_bytes()); // p_filesz
    b.extend_from_slice(&len.to_le_bytes()); // p_memsz
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    debug_assert_eq!(b.len(), usize::from(CODE_OFFSET));
    b.extend_from_slice(code);
    b
}

/// Whether this host can execute the images (x86_64 Linux).
pub fn native() -> bool {
    cfg!(all(target_arch = "x86_64", target_os = "linux"))
}

/// Writes `bytes` to `path` (which must not exist yet) with mode 0755.
///
/// # Errors
/// Creating or writing the file fails.
pub fn write_executable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    // The umask may have cleared bits of the creation mode.
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(x)
    }

    #[test]
    fn header_fields_are_consistent() {
        let b = static_true();
        assert_eq!(b.len(), 129);
        assert_eq!(b.len(), TRUE_LEN);
        assert_eq!(&b[..4], b"\x7fELF");
        assert_eq!(b[4], 2, "ELFCLASS64");
        assert_eq!(b[5], 1, "little-endian");
        assert_eq!(u16_at(&b, 16), 2, "ET_EXEC");
        assert_eq!(u16_at(&b, 18), 0x3e, "EM_X86_64");
        let entry = u64_at(&b, 24);
        let phoff = u64_at(&b, 32) as usize;
        assert_eq!(phoff, 64);
        assert_eq!(u16_at(&b, 52), 64, "e_ehsize");
        assert_eq!(u16_at(&b, 54), 56, "e_phentsize");
        assert_eq!(u16_at(&b, 56), 1, "e_phnum");
        // The program header maps the whole file and the entry point lands on the code.
        let vaddr = u64_at(&b, phoff + 16);
        let filesz = u64_at(&b, phoff + 32) as usize;
        assert_eq!(filesz, b.len());
        let code_at = (entry - vaddr) as usize;
        assert_eq!(&b[code_at..], &TRUE_CODE);
        // The code is exit_group(0): eax = 231, edi zeroed.
        assert_eq!(
            u32::from_le_bytes([
                b[code_at + 3],
                b[code_at + 4],
                b[code_at + 5],
                b[code_at + 6]
            ]),
            231
        );
    }

    #[test]
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_os = "linux")),
        ignore = "the image is x86_64 Linux machine code"
    )]
    fn written_true_executes_and_exits_zero() {
        let dir = TempDir::new("elf-test").expect("temp dir");
        let path = dir.path().join("true");
        write_executable(&path, &static_true()).expect("write static true");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(meta.len(), TRUE_LEN as u64);
        let status = retry_etxtbsy(|| std::process::Command::new(&path).arg("ignored").status())
            .expect("execute the static true");
        assert_eq!(status.code(), Some(0), "{status:?}");
        // create_new: a second write to the same path must not clobber it.
        assert!(write_executable(&path, &static_true()).is_err());
    }

    /// Other test threads fork while we write the file; a child holding our write fd until its
    /// exec makes our exec fail with ETXTBSY for a moment.
    fn retry_etxtbsy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        for _ in 0..100 {
            match f() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => return other,
            }
        }
        f()
    }

    fn run_probe(probe: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>) {
        let out = retry_etxtbsy(|| {
            std::process::Command::new(probe)
                .args(args)
                .stderr(std::process::Stdio::null())
                .output()
        })
        .expect("run the probe");
        (out.status.code(), out.stdout)
    }

    fn maxrss(stdout: &[u8]) -> u64 {
        let tail: [u8; 8] = stdout[stdout.len() - 8..].try_into().expect("8 bytes");
        u64::from_le_bytes(tail)
    }

    #[test]
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_os = "linux")),
        ignore = "the image is x86_64 Linux machine code"
    )]
    fn rss_probe_reports_peak_rss_and_passes_the_exit_code_through() {
        let dir = TempDir::new("elf-test").expect("temp dir");
        let probe = dir.path().join("rss-probe");
        write_executable(&probe, &rss_probe()).expect("write probe");
        assert_eq!(fs::metadata(&probe).expect("metadata").len(), 274);
        let sh = "/bin/sh";
        let (code, out) = run_probe(&probe, &[sh, "-c", "exit 3"]);
        assert_eq!(code, Some(3));
        assert_eq!(out.len(), 8);
        let small = maxrss(&out);
        assert!(small > 0 && small < 64 * 1024, "sh peak RSS {small} KiB");
        // A command that touches 40 MiB must report at least that much: the probe measures the
        // child, not a constant.
        let (code, out) = run_probe(
            &probe,
            &[
                sh,
                "-c",
                "x=$(head -c 41943040 /dev/zero | tr '\\0' a); exit 0",
            ],
        );
        assert_eq!(code, Some(0));
        assert!(maxrss(&out) > small, "{} <= {small}", maxrss(&out));
        let (code, _) = run_probe(&probe, &[sh, "-c", "kill -9 $$"]);
        assert_eq!(code, Some(137));
        let (code, out) = run_probe(&probe, &["/nonexistent/agentcage-bench"]);
        assert_eq!((code, out.len()), (Some(127), 8));
    }
}
