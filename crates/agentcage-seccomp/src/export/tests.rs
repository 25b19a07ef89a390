//! The exported profile agrees with the compiled BPF: the JSON is parsed back and evaluated
//! with the runtimes' semantics (entries of one name, every condition true, 64-bit masked
//! comparisons), independently of how it was built.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::emulate::{emulate, SeccompData, Verdict};
use crate::table::{by_nr, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, X32_SYSCALL_BIT};

/// What a call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Errno(i32),
    Kill,
}

impl Decision {
    fn denies(self) -> bool {
        self != Decision::Allow
    }
}

fn scmp_audit(name: &str) -> u32 {
    match name {
        "SCMP_ARCH_X86_64" => Arch::X86_64.audit_arch(),
        "SCMP_ARCH_AARCH64" => Arch::Aarch64.audit_arch(),
        other => panic!("unexpected architecture {other}"),
    }
}

fn arch_of(audit: u32) -> Option<Arch> {
    Arch::ALL.into_iter().find(|a| a.audit_arch() == audit)
}

/// One entry as a runtime reads it.
struct Parsed {
    names: Vec<String>,
    action: Decision,
    /// (index, mask, expected) of `SCMP_CMP_MASKED_EQ`, 64-bit.
    conds: Vec<(usize, u64, u64)>,
}

/// The JSON profile, parsed once (every field checked).
struct Runtime {
    audits: Vec<u32>,
    default: Decision,
    entries: Vec<Parsed>,
}

fn decision(action: &Value, errno: &Value) -> Decision {
    match action.as_str().expect("action") {
        "SCMP_ACT_ALLOW" => Decision::Allow,
        "SCMP_ACT_ERRNO" => Decision::Errno(errno.as_i64().expect("errnoRet") as i32),
        other => panic!("unexpected action {other}"),
    }
}

impl Runtime {
    fn new(p: &Value) -> Runtime {
        let audits = p["architectures"]
            .as_array()
            .expect("architectures")
            .iter()
            .map(|a| scmp_audit(a.as_str().expect("string")))
            .collect();
        let default = decision(&p["defaultAction"], &p["defaultErrnoRet"]);
        let entries = p["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .map(|e| {
                let names = e["names"]
                    .as_array()
                    .expect("names")
                    .iter()
                    .map(|n| n.as_str().expect("name").to_string())
                    .collect();
                let mut seen = BTreeSet::new();
                let conds = e["args"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let i = c["index"].as_u64().expect("index") as usize;
                        assert!(i < 6 && seen.insert(i), "two conditions on arg {i}: {e}");
                        assert_eq!(c["op"], "SCMP_CMP_MASKED_EQ");
                        let mask = c["value"].as_u64().expect("value");
                        (i, mask, c["valueTwo"].as_u64().expect("valueTwo"))
                    })
                    .collect();
                Parsed {
                    names,
                    action: decision(&e["action"], &e["errnoRet"]),
                    conds,
                }
            })
            .collect();
        Runtime {
            audits,
            default,
            entries,
        }
    }

    /// The runtime's decision for one call: libseccomp's semantics.
    fn eval(&self, audit: u32, nr: u32, args: [u64; 6]) -> Decision {
        // An ABI not in the filter, and x32's numbers (bit 30 and up) in an x86_64 filter
        // without SCMP_ARCH_X32, take the bad-architecture action.
        let x32 = audit == Arch::X86_64.audit_arch() && nr >= X32_SYSCALL_BIT;
        if !self.audits.contains(&audit) || x32 {
            return Decision::Kill;
        }
        let arch = arch_of(audit).expect("listed arch is known");
        let Some(row) = by_nr(arch, nr) else {
            return self.default;
        };
        let mut hit: Option<Decision> = None;
        for e in &self.entries {
            if !e.names.iter().any(|n| n == row.name) {
                continue;
            }
            if !e
                .conds
                .iter()
                .all(|&(i, mask, want)| args[i] & mask == want)
            {
                continue;
            }
            if let Some(h) = hit {
                assert_eq!(
                    h, e.action,
                    "{}: entries of different actions overlap for {args:x?}",
                    row.name
                );
            }
            hit = Some(e.action);
        }
        hit.unwrap_or(self.default)
    }
}

fn eval(p: &Value, audit: u32, nr: u32, args: [u64; 6]) -> Decision {
    Runtime::new(p).eval(audit, nr, args)
}

fn bpf(prog: &[libc::sock_filter], audit: u32, nr: u32, args: [u64; 6]) -> Decision {
    let out = emulate(prog, &SeccompData::new(nr as i32, audit, args)).expect("runs");
    match out.verdict {
        Verdict::Allow => Decision::Allow,
        Verdict::Errno(e) => Decision::Errno(e),
        Verdict::KillProcess | Verdict::KillThread => Decision::Kill,
        other => panic!("unexpected verdict {other:?}"),
    }
}

fn json_of(p: &SeccompProfile, f: ProfileFormat) -> Value {
    let text = serde_json::to_string_pretty(&p.to_json(f)).expect("serializes");
    serde_json::from_str(&text).expect("parses")
}

/// Every constant the BPF program compares an argument with (and its neighbours; each bit of
/// a `jset` mask): the filter's side of the argument grid, independent of the profile.
fn bpf_constants(prog: &[libc::sock_filter]) -> Vec<u64> {
    let mut v = BTreeSet::new();
    let mut on_arg = false;
    for ins in prog {
        if ins.code == crate::bpf::LD_W_ABS {
            on_arg = ins.k >= crate::bpf::off_arg_lo(0);
            continue;
        }
        if !on_arg {
            continue;
        }
        match ins.code {
            crate::bpf::JMP_JEQ_K | crate::bpf::JMP_JGE_K | crate::bpf::JMP_JGT_K => {
                let k = u64::from(ins.k);
                v.extend([k, k.wrapping_sub(1) & 0xffff_ffff, (k + 1) & 0xffff_ffff]);
            }
            crate::bpf::JMP_JSET_K | crate::bpf::ALU_AND_K => {
                v.insert(u64::from(ins.k));
                v.extend(
                    (0..32)
                        .map(|b| 1u64 << b)
                        .filter(|b| u64::from(ins.k) & b != 0),
                );
            }
            _ => {}
        }
    }
    v.into_iter().collect()
}

/// Argument values worth trying at `index` of `name`: every constant of the profile's
/// conditions there, with all other bits of its mask set, and its neighbours.
fn candidates(rt: &Runtime, name: &str, index: usize) -> Vec<u64> {
    let mut v: BTreeSet<u64> = [0u64, 0xffff_ffff].into_iter().collect();
    for e in rt
        .entries
        .iter()
        .filter(|e| e.names.iter().any(|n| n == name))
    {
        for &(i, mask, want) in &e.conds {
            if i != index {
                continue;
            }
            for x in [
                want,
                want | (!mask & 0xffff_ffff),
                want.wrapping_sub(1),
                want + 1,
            ] {
                v.insert(x & 0xffff_ffff);
            }
        }
    }
    v.into_iter().collect()
}

/// Every single bit and the same value with a high word set: the kernel ignores it.
fn variations(v: &[u64]) -> Vec<u64> {
    let mut out: BTreeSet<u64> = v.iter().copied().collect();
    for b in 0..64 {
        out.insert(1 << b);
    }
    for &x in v {
        out.insert(x | 1 << 32);
        out.insert(x | 0xffff_ffff_0000_0000);
    }
    out.into_iter().collect()
}

struct Seen {
    differences: Vec<&'static str>,
    calls: usize,
}

struct Pair<'a> {
    p: &'a SeccompProfile,
    rt: Runtime,
    prog: Vec<libc::sock_filter>,
    arch: Arch,
    /// The profile compiled by the real libseccomp (then it decides instead of `rt`), and
    /// the names that libseccomp does not know (skipped, as runc and crun skip them).
    libseccomp: Option<(Vec<libc::sock_filter>, Vec<String>)>,
}

impl Pair<'_> {
    fn compare(&self, nr: u32, args: [u64; 6], seen: &mut Seen) {
        let audit = self.arch.audit_arch();
        let want = bpf(&self.prog, audit, nr, args);
        let got = match &self.libseccomp {
            Some((prog, _)) => bpf(prog, audit, nr, args),
            None => self.rt.eval(audit, nr, args),
        };
        seen.calls += 1;
        if want == got {
            return;
        }
        let name = by_nr(self.arch, nr).map_or("?", |r| r.name);
        let unknown = self
            .libseccomp
            .as_ref()
            .is_some_and(|(_, u)| u.iter().any(|n| n == name));
        if unknown {
            // Falls to the default action: stricter (or the same denial), never weaker.
            assert!(got.denies(), "{name}: unknown to libseccomp yet allowed");
            seen.differences.push("(unknown to libseccomp)");
            return;
        }
        let Some(dev) = self.p.deviations.iter().find(|d| d.syscall == name) else {
            panic!(
                "{:?} {name} ({nr}) {args:x?}: filter {want:?}, profile {got:?}",
                self.arch
            );
        };
        assert!(
            got.denies(),
            "{name} {args:x?}: the profile allows what the filter denies ({want:?})"
        );
        assert!(
            want.denies() || dev.stricter,
            "{name} {args:x?}: stricter than the filter ({got:?}) without saying so"
        );
        seen.differences.push(dev.syscall);
    }
}

fn agreement(p: &SeccompProfile, arch: Arch, tcp_guards: bool) -> Seen {
    agreement_with(p, arch, tcp_guards, None)
}

fn agreement_with(
    p: &SeccompProfile,
    arch: Arch,
    tcp_guards: bool,
    libseccomp: Option<(Vec<libc::sock_filter>, Vec<String>)>,
) -> Seen {
    let json = json_of(p, ProfileFormat::Oci);
    let pair = Pair {
        p,
        rt: Runtime::new(&json),
        prog: crate::compile::compile_with(arch, tcp_guards).expect("compiles"),
        arch,
        libseccomp,
    };
    let mut seen = Seen {
        differences: Vec::new(),
        calls: 0,
    };
    // Every number below the x32 range, with zero and with all-ones arguments.
    let max = SYSCALLS
        .iter()
        .filter_map(|s| s.nr(arch))
        .max()
        .expect("rows");
    for nr in (0..=max + 64).chain([1000, 4096, 0x3fff_ffff]) {
        for args in [[0; 6], [u64::MAX; 6], [0xffff_ffff; 6]] {
            pair.compare(nr, args, &mut seen);
        }
    }
    // Argument-checked syscalls: every combination of their conditions' constants, then
    // each argument alone through every bit and high word.
    for s in SYSCALLS {
        let Some(nr) = s.nr(arch) else { continue };
        let checked = matches!(s.rule, Rule::Args(_))
            || (tcp_guards && TCP_RULE_GUARDS.iter().any(|(n, _)| *n == s.name));
        if !checked {
            continue;
        }
        let grids: Vec<Vec<u64>> = (0..6).map(|i| candidates(&pair.rt, s.name, i)).collect();
        let idx: Vec<usize> = (0..6).filter(|&i| grids[i].len() > 2).collect();
        assert!(!idx.is_empty(), "{}: no condition", s.name);
        let sub: Vec<Vec<u64>> = idx.iter().map(|&i| grids[i].clone()).collect();
        let mut args = [0u64; 6];
        walk(&sub, &idx, 0, &mut args, &mut |a| {
            pair.compare(nr, *a, &mut seen)
        });
        for (k, &i) in idx.iter().enumerate() {
            let mut base = [0u64; 6];
            for (j, &other) in idx.iter().enumerate() {
                if j != k {
                    // A value of the other arguments that reaches this one's check.
                    base[other] = sub[j][sub[j].len() / 2];
                }
            }
            // The profile's constants, every bit, high words, and the filter's own
            // constants (so a value the translation forgot is tried too).
            let mut values = variations(&sub[k]);
            values.extend(bpf_constants(&pair.prog));
            for base in [base, [0; 6]] {
                for &v in &values {
                    let mut a = base;
                    a[i] = v;
                    pair.compare(nr, a, &mut seen);
                }
            }
        }
    }
    seen
}

fn walk(
    grids: &[Vec<u64>],
    idx: &[usize],
    k: usize,
    args: &mut [u64; 6],
    f: &mut dyn FnMut(&[u64; 6]),
) {
    if k == idx.len() {
        f(args);
        return;
    }
    for &v in &grids[k] {
        args[idx[k]] = v;
        walk(grids, idx, k + 1, args, f);
    }
}

#[test]
fn profile_and_bpf_agree_syscall_by_syscall() {
    for arch in Arch::ALL {
        for tcp_guards in [false, true] {
            let p = export(&ExportOptions {
                arches: vec![arch],
                tcp_guards,
            });
            let seen = agreement(&p, arch, tcp_guards);
            assert!(seen.calls > 10_000, "{arch:?}: only {} calls", seen.calls);
            // Every documented deviation shows; nothing else differs (compare() panics).
            for d in p.deviations.iter().filter(|d| d.syscall != "*") {
                assert!(
                    seen.differences.contains(&d.syscall),
                    "{arch:?}: deviation {d:?} never observed"
                );
            }
        }
    }
}

#[test]
fn foreign_abis_are_killed_by_both() {
    for arch in Arch::ALL {
        let p = export(&ExportOptions {
            arches: vec![arch],
            tcp_guards: false,
        });
        let json = json_of(&p, ProfileFormat::Oci);
        let prog = crate::compile::compile(arch).expect("compiles");
        let foreign = match arch {
            Arch::X86_64 => AUDIT_ARCH_I386,
            Arch::Aarch64 => AUDIT_ARCH_ARM,
        };
        // i386 mount (21), ptrace (26), socketcall (102), unshare (310); ARM's equivalents.
        for nr in [0, 1, 11, 21, 26, 102, 310, 1000] {
            assert_eq!(bpf(&prog, foreign, nr, [0; 6]), Decision::Kill);
            assert_eq!(eval(&json, foreign, nr, [0; 6]), Decision::Kill);
        }
        if arch == Arch::X86_64 {
            for nr in [
                X32_SYSCALL_BIT + 39,
                X32_SYSCALL_BIT + 165,
                X32_SYSCALL_BIT + 272,
            ] {
                assert_eq!(bpf(&prog, arch.audit_arch(), nr, [0; 6]), Decision::Kill);
                assert_eq!(eval(&json, arch.audit_arch(), nr, [0; 6]), Decision::Kill);
            }
        }
    }
}

#[test]
fn complement_is_exact_and_disjoint() {
    // Exhaustive on small domains, random sets.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let domain = (rnd() as u32) & 0x3ff;
        let vals: Vec<u32> = (0..(rnd() % 5)).map(|_| rnd() as u32).collect();
        let c = complement(0, domain, &vals);
        for x in 0..0x400u32 {
            let hits = c.iter().filter(|k| x & k.mask == k.value).count();
            let refused = vals.iter().any(|v| v & domain == x & domain);
            assert_eq!(
                hits,
                usize::from(!refused),
                "domain {domain:#x} vals {vals:x?} x {x:#x}"
            );
        }
    }
    // The ioctl complement stays small enough for a hot syscall.
    assert!(complement(1, u32::MAX, &[TIOCSTI, TIOCLINUX, TIOCSETD]).len() <= COMPLEMENT_MAX);
}

#[test]
fn both_formats_carry_the_same_rules() {
    let p = export(&ExportOptions {
        arches: Arch::ALL.to_vec(),
        tcp_guards: false,
    });
    let oci = p.to_json(ProfileFormat::Oci);
    let mut docker = p.to_json(ProfileFormat::Docker);
    assert!(docker["comment"]
        .as_str()
        .is_some_and(|c| c.contains("socket")));
    let obj = docker.as_object_mut().expect("object");
    obj.remove("comment");
    for e in obj["syscalls"].as_array_mut().expect("syscalls") {
        e.as_object_mut().expect("entry").remove("comment");
    }
    assert_eq!(oci, docker);
    // runc 1.1 refuses any flag; Docker 20.10 drops them.
    assert!(oci.get("flags").is_none());
    assert_eq!(oci["defaultErrnoRet"], libc::ENOSYS);
}

#[test]
fn every_allowed_and_denied_row_is_named_once_per_action() {
    let p = export(&ExportOptions {
        arches: vec![Arch::X86_64],
        tcp_guards: false,
    });
    for s in SYSCALLS.iter().filter(|s| s.x86_64.is_some()) {
        let n = p
            .entries
            .iter()
            .filter(|e| e.names.contains(&s.name))
            .count();
        match s.rule {
            // ENOSYS rows too, although ENOSYS is the default: Docker 20.10 drops
            // defaultErrnoRet.
            Rule::Allow | Rule::Deny(..) => assert_eq!(n, 1, "{}", s.name),
            Rule::Args(_) => assert!(n >= 2, "{}", s.name),
        }
    }
    // Not a second list: nothing outside the table.
    for e in &p.entries {
        for n in &e.names {
            assert!(crate::table::by_name(n).is_some(), "{n}");
        }
    }
}

/// The system's libseccomp (what runc and crun link), loaded at run time: no build
/// dependency, and a machine without it skips the check.
mod libseccomp {
    use std::ffi::{c_char, c_int, c_uint, c_void, CString};

    use serde_json::Value;

    type Ctx = *mut c_void;

    #[repr(C)]
    struct ArgCmp {
        arg: c_uint,
        op: c_int,
        datum_a: u64,
        datum_b: u64,
    }

    /// `SCMP_CMP_MASKED_EQ`.
    const MASKED_EQ: c_int = 7;
    const ACT_ALLOW: u32 = 0x7fff_0000;
    const fn act_errno(e: i64) -> u32 {
        0x0005_0000 | (e as u32 & 0xffff)
    }

    type InitFn = unsafe extern "C" fn(u32) -> Ctx;
    type ArchFn = unsafe extern "C" fn(Ctx, u32) -> c_int;
    type ResolveFn = unsafe extern "C" fn(u32, *const c_char) -> c_int;
    type RuleFn = unsafe extern "C" fn(Ctx, u32, c_int, c_uint, *const ArgCmp) -> c_int;
    type ExportFn = unsafe extern "C" fn(Ctx, c_int) -> c_int;
    type ReleaseFn = unsafe extern "C" fn(Ctx);

    pub struct Lib {
        init: InitFn,
        arch_add: ArchFn,
        arch_remove: ArchFn,
        resolve: ResolveFn,
        rule_add_array: RuleFn,
        export_bpf: ExportFn,
        release: ReleaseFn,
    }

    fn sym(h: *mut c_void, name: &str) -> Result<*mut c_void, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: `h` is a live handle from dlopen; `c` is a NUL-terminated string.
        let p = unsafe { libc::dlsym(h, c.as_ptr()) };
        if p.is_null() {
            Err(format!("libseccomp has no {name}"))
        } else {
            Ok(p)
        }
    }

    impl Lib {
        pub fn load() -> Result<Lib, String> {
            // SAFETY: dlopen of a library by name; the handle is never closed (the symbols
            // stay valid for the process).
            let h = unsafe { libc::dlopen(c"libseccomp.so.2".as_ptr(), libc::RTLD_NOW) };
            if h.is_null() {
                return Err("libseccomp.so.2 not found (Debian: libseccomp2)".into());
            }
            let syms = [
                sym(h, "seccomp_init")?,
                sym(h, "seccomp_arch_add")?,
                sym(h, "seccomp_arch_remove")?,
                sym(h, "seccomp_syscall_resolve_name_arch")?,
                sym(h, "seccomp_rule_add_array")?,
                sym(h, "seccomp_export_bpf")?,
                sym(h, "seccomp_release")?,
            ];
            // SAFETY: each symbol is libseccomp's public function of that name, whose C
            // prototype (seccomp.h, 2.4 and later) is exactly the function type it becomes.
            let lib = unsafe {
                Lib {
                    init: std::mem::transmute::<*mut c_void, InitFn>(syms[0]),
                    arch_add: std::mem::transmute::<*mut c_void, ArchFn>(syms[1]),
                    arch_remove: std::mem::transmute::<*mut c_void, ArchFn>(syms[2]),
                    resolve: std::mem::transmute::<*mut c_void, ResolveFn>(syms[3]),
                    rule_add_array: std::mem::transmute::<*mut c_void, RuleFn>(syms[4]),
                    export_bpf: std::mem::transmute::<*mut c_void, ExportFn>(syms[5]),
                    release: std::mem::transmute::<*mut c_void, ReleaseFn>(syms[6]),
                }
            };
            Ok(lib)
        }

        /// Compiles the JSON profile as runc does (names resolved, unknown names skipped,
        /// rules equal to the default skipped) for the architectures `audits`, with
        /// libseccomp's defaults otherwise. Returns the program and the skipped names.
        pub fn compile(
            &self,
            p: &Value,
            audits: &[u32],
        ) -> Result<(Vec<libc::sock_filter>, Vec<String>), String> {
            let default = act_errno(p["defaultErrnoRet"].as_i64().unwrap_or(1));
            // SAFETY: plain C calls on a context we own until release below; every pointer
            // passed points into live Rust values for the duration of the call.
            unsafe {
                let ctx = (self.init)(default);
                if ctx.is_null() {
                    return Err("seccomp_init failed".into());
                }
                let result = self.fill(ctx, p, audits, default);
                (self.release)(ctx);
                result
            }
        }

        /// # Safety
        /// `ctx` is a live context from `seccomp_init`.
        unsafe fn fill(
            &self,
            ctx: Ctx,
            p: &Value,
            audits: &[u32],
            default: u32,
        ) -> Result<(Vec<libc::sock_filter>, Vec<String>), String> {
            // SAFETY: the caller's contract; arch tokens are AUDIT_ARCH values.
            unsafe {
                for &audit in audits {
                    // The native architecture is already there (EEXIST).
                    if audit != native() && (self.arch_add)(ctx, audit) != 0 {
                        return Err(format!("seccomp_arch_add({audit:#x}) failed"));
                    }
                }
                if !audits.contains(&native()) && (self.arch_remove)(ctx, native()) != 0 {
                    return Err("seccomp_arch_remove(native) failed".into());
                }
            }
            let mut unknown = Vec::new();
            for e in p["syscalls"].as_array().into_iter().flatten() {
                let action = match e["action"].as_str() {
                    Some("SCMP_ACT_ALLOW") => ACT_ALLOW,
                    Some("SCMP_ACT_ERRNO") => act_errno(e["errnoRet"].as_i64().unwrap_or(1)),
                    other => return Err(format!("action {other:?}")),
                };
                if action == default {
                    continue; // runc and crun skip these (libseccomp: EACCES)
                }
                let args: Vec<ArgCmp> = e["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| ArgCmp {
                        arg: c["index"].as_u64().unwrap_or(9) as c_uint,
                        op: MASKED_EQ,
                        datum_a: c["value"].as_u64().unwrap_or(0),
                        datum_b: c["valueTwo"].as_u64().unwrap_or(0),
                    })
                    .collect();
                for n in e["names"].as_array().into_iter().flatten() {
                    let name = n.as_str().unwrap_or_default();
                    let c = CString::new(name).map_err(|e| e.to_string())?;
                    // Rule numbers are the native architecture's (seccomp_rule_add(3));
                    // libseccomp translates them for the filter's architecture, as it does
                    // for runc on any host.
                    // SAFETY: `c` is NUL-terminated and outlives the call.
                    let nr = unsafe { (self.resolve)(native(), c.as_ptr()) };
                    if nr < 0 {
                        unknown.push(name.to_string());
                        continue;
                    }
                    // SAFETY: `args` outlives the call; its length is passed.
                    let rc = unsafe {
                        (self.rule_add_array)(ctx, action, nr, args.len() as c_uint, args.as_ptr())
                    };
                    if rc != 0 {
                        return Err(format!("seccomp_rule_add {name}: {rc}"));
                    }
                }
            }
            // SAFETY: memfd_create with a static name; the fd is closed below.
            let fd = unsafe { libc::memfd_create(c"agentcage-bpf".as_ptr(), libc::MFD_CLOEXEC) };
            if fd < 0 {
                return Err("memfd_create failed".into());
            }
            // SAFETY: `ctx` is live (caller) and `fd` is ours.
            let rc = unsafe { (self.export_bpf)(ctx, fd) };
            let mut bytes = Vec::new();
            if rc == 0 {
                use std::io::{Read, Seek};
                use std::os::fd::FromRawFd;
                // SAFETY: `fd` is an open memfd owned here; File takes it over and closes it.
                let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
                f.rewind().map_err(|e| e.to_string())?;
                f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            } else {
                // SAFETY: `fd` is ours and still open.
                unsafe { libc::close(fd) };
                return Err(format!("seccomp_export_bpf: {rc}"));
            }
            let prog = bytes
                .chunks_exact(8)
                .map(|c| libc::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            Ok((prog, unknown))
        }
    }

    fn native() -> u32 {
        crate::table::Arch::native().map_or(0, |a| a.audit_arch())
    }
}

/// The system's libseccomp, or `None` after printing why the test is skipped; a failure when
/// `AGENTCAGE_TEST_EXPECT` lists `libseccomp`.
fn libseccomp_or_skip(test: &str) -> Option<libseccomp::Lib> {
    match libseccomp::Lib::load() {
        Ok(l) => Some(l),
        Err(why) => {
            let expected = std::env::var("AGENTCAGE_TEST_EXPECT")
                .is_ok_and(|v| v.split(',').any(|f| f.trim() == "libseccomp"));
            assert!(
                !expected,
                "AGENTCAGE_TEST_EXPECT lists libseccomp but: {why}"
            );
            eprintln!("skip {test}: {why}");
            None
        }
    }
}

/// The real libseccomp (the compiler runc and crun use) turns the JSON into a program that
/// decides as agentcage's BPF does, for every number and the argument grid, on both
/// architectures; foreign ABIs and x32 numbers die there too.
#[test]
fn libseccomp_compiles_the_profile_to_the_same_decisions() {
    let Some(lib) = libseccomp_or_skip("libseccomp_compiles_the_profile_to_the_same_decisions")
    else {
        return;
    };
    for arch in Arch::ALL {
        let p = export(&ExportOptions {
            arches: vec![arch],
            tcp_guards: false,
        });
        let json = json_of(&p, ProfileFormat::Oci);
        let (prog, unknown) = lib
            .compile(&json, &[arch.audit_arch()])
            .expect("libseccomp compiles");
        eprintln!(
            "{arch:?}: libseccomp program {} instructions; names it does not know: {unknown:?}",
            prog.len()
        );
        let foreign = match arch {
            Arch::X86_64 => AUDIT_ARCH_I386,
            Arch::Aarch64 => AUDIT_ARCH_ARM,
        };
        for nr in [0, 11, 21, 26, 102] {
            assert_eq!(
                bpf(&prog, foreign, nr, [0; 6]),
                Decision::Kill,
                "{arch:?} foreign {nr}"
            );
        }
        if arch == Arch::X86_64 {
            for nr in [X32_SYSCALL_BIT + 39, X32_SYSCALL_BIT + 165] {
                assert_eq!(bpf(&prog, arch.audit_arch(), nr, [0; 6]), Decision::Kill);
            }
        }
        let seen = agreement_with(&p, arch, false, Some((prog, unknown)));
        assert!(seen.calls > 10_000);
    }
}

/// A profile for a mixed fleet (both architectures listed) means, on each architecture, what
/// that architecture's BPF means (libseccomp resolves each name per architecture).
#[test]
fn libseccomp_multi_arch_profile_agrees_on_each_arch() {
    let Some(lib) = libseccomp_or_skip("libseccomp_multi_arch_profile_agrees_on_each_arch") else {
        return;
    };
    let p = export(&ExportOptions {
        arches: Arch::ALL.to_vec(),
        tcp_guards: false,
    });
    let json = json_of(&p, ProfileFormat::Oci);
    let audits: Vec<u32> = Arch::ALL.iter().map(|a| a.audit_arch()).collect();
    let (prog, unknown) = lib.compile(&json, &audits).expect("libseccomp compiles");
    for arch in Arch::ALL {
        let seen = agreement_with(&p, arch, false, Some((prog.clone(), unknown.clone())));
        assert!(seen.calls > 10_000);
    }
    // i386 is listed on neither: still killed.
    assert_eq!(bpf(&prog, AUDIT_ARCH_I386, 21, [0; 6]), Decision::Kill);
}
