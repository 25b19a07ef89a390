//! Landlock as `agentcage doctor` reports it. The ABI comes from
//! [`agentcage_landlock::detect_abi`] and the rights from [`Right::ALL`]: the launcher and
//! doctor cannot disagree about either.

use agentcage_landlock::abi::Kind;
use agentcage_landlock::{HostSupport, Right, Unavailable, MAX_KNOWN_ABI};
use serde::Serialize;

use super::{errno_text, Support};

/// One Landlock right (or restrict_self flag) and the ABI that introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LandlockRight {
    /// `fs`, `net`, `scope` or `restrict_self` (flags of landlock_restrict_self).
    pub kind: &'static str,
    /// The right's name (`LANDLOCK_ACCESS_FS_` etc. stripped, lower case).
    pub name: &'static str,
    /// First ABI version that has it.
    pub abi: u32,
}

/// The `landlock_restrict_self` flags doctor lists, by ABI. They are flags, not access rights:
/// `agentcage-landlock`'s [`Right`] table holds only the one the launcher sets
/// (`LOG_NEW_EXEC_ON`, as `audit.log_new_exec`), so doctor names all of them here.
const RESTRICT_SELF_FLAGS: [(&str, u32); 4] = [
    ("log_same_exec_off", 7),
    ("log_new_exec_on", 7),
    ("log_subdomains_off", 7),
    ("tsync", 8),
];

/// Every right of [`Right::ALL`] (less the audit flag, listed with the restrict_self flags) and
/// every restrict_self flag, ordered by the ABI that introduced it.
pub fn landlock_rights() -> Vec<LandlockRight> {
    let rights = Right::ALL.iter().filter_map(|r| {
        let kind = match r.kind() {
            Kind::Fs(_) => "fs",
            Kind::Net(_) => "net",
            Kind::Scope(_) => "scope",
            Kind::RestrictFlag(_) => return None,
        };
        let name = r.name().split_once('.').map_or(r.name(), |(_, n)| n);
        Some(LandlockRight {
            kind,
            name,
            abi: r.since_abi(),
        })
    });
    let flags = RESTRICT_SELF_FLAGS
        .iter()
        .map(|&(name, abi)| LandlockRight {
            kind: "restrict_self",
            name,
            abi,
        });
    let mut all: Vec<LandlockRight> = rights.chain(flags).collect();
    all.sort_by_key(|r| r.abi); // stable: within an ABI, Right::ALL's order
    all
}

/// Why Landlock is unusable, with the fix.
fn unavailable_reason(why: Unavailable) -> String {
    match why {
        Unavailable::NotBuilt => {
            "the kernel is built without Landlock (ENOSYS; CONFIG_SECURITY_LANDLOCK=y is needed, \
             kernel 5.13+)"
                .to_string()
        }
        Unavailable::DisabledAtBoot => "Landlock is built in but not enabled (EOPNOTSUPP): boot \
             with lsm=...,landlock (add it to the list in /sys/kernel/security/lsm)"
            .to_string(),
        Unavailable::Other { errno } if errno == libc::EPERM => format!(
            "landlock_create_ruleset failed with {} (a seccomp filter, e.g. an older \
             container profile, denies the Landlock syscalls)",
            errno_text(errno)
        ),
        Unavailable::Other { errno } => {
            format!("landlock_create_ruleset failed with {}", errno_text(errno))
        }
    }
}

/// The JSON shape of [`LandlockInfo::abi`] (`{"status": "available", "version": 7}`).
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
enum AbiJson {
    Available { version: u32 },
    NotBuilt,
    Disabled,
    Error { errno: i32 },
}

fn serialize_abi<S: serde::Serializer>(abi: &HostSupport, s: S) -> Result<S::Ok, S::Error> {
    match *abi {
        Ok(version) => AbiJson::Available { version },
        Err(Unavailable::NotBuilt) => AbiJson::NotBuilt,
        Err(Unavailable::DisabledAtBoot) => AbiJson::Disabled,
        Err(Unavailable::Other { errno }) => AbiJson::Error { errno },
    }
    .serialize(s)
}

/// Landlock as detected.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockInfo {
    /// The ABI, or why there is none ([`agentcage_landlock::detect_abi`]).
    #[serde(serialize_with = "serialize_abi")]
    pub abi: HostSupport,
    /// The ABI version, for convenience (0 = unusable).
    pub version: u32,
    /// Support with its reason.
    pub support: Support,
    /// The rights this ABI brings.
    pub rights: Vec<LandlockRight>,
    /// Rights of newer ABIs this kernel lacks (each is a gap a newer kernel would close).
    pub missing: Vec<LandlockRight>,
}

impl LandlockInfo {
    /// Builds the report for an ABI.
    pub fn from_abi(abi: HostSupport) -> LandlockInfo {
        let version = abi.unwrap_or(0);
        let (rights, missing) = landlock_rights()
            .into_iter()
            .partition(|r| r.abi <= version);
        let support = match abi {
            Ok(_) if version > MAX_KNOWN_ABI => Support::yes_because(format!(
                "ABI {version} is newer than this build knows (ABI {MAX_KNOWN_ABI}); its \
                 extra rights are not used"
            )),
            Ok(_) => Support::yes(),
            Err(why) => Support::no(unavailable_reason(why)),
        };
        LandlockInfo {
            abi,
            version,
            support,
            rights,
            missing,
        }
    }

    /// Whether the kernel has a right, e.g. `has("net", "connect_tcp")`.
    pub fn has(&self, kind: &str, name: &str) -> bool {
        self.rights.iter().any(|r| r.kind == kind && r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landlock_abi_reasons_and_rights() {
        assert!(unavailable_reason(Unavailable::NotBuilt).contains("ENOSYS"));
        assert!(unavailable_reason(Unavailable::DisabledAtBoot).contains("lsm="));
        assert!(unavailable_reason(Unavailable::Other { errno: libc::EPERM }).contains("seccomp"));
        let v3 = LandlockInfo::from_abi(Ok(3));
        assert!(v3.has("fs", "truncate") && !v3.has("net", "connect_tcp"));
        assert_eq!(v3.rights.len() + v3.missing.len(), landlock_rights().len());
        let off = LandlockInfo::from_abi(Err(Unavailable::DisabledAtBoot));
        assert!(!off.support.available && off.rights.is_empty() && off.version == 0);
        let future = LandlockInfo::from_abi(Ok(42));
        assert!(future.support.available && future.support.reason.is_some());
        for abi in 1..=MAX_KNOWN_ABI {
            assert!(
                landlock_rights().iter().any(|r| r.abi == abi),
                "ABI {abi} adds nothing?"
            );
        }
    }

    /// The list and the JSON are those of the table doctor had before it used
    /// `agentcage-landlock`'s (`agentcage doctor --json` is a stable interface).
    #[test]
    fn rights_and_abi_json_are_unchanged() {
        let names: Vec<String> = landlock_rights()
            .iter()
            .map(|r| format!("{}.{}@{}", r.kind, r.name, r.abi))
            .collect();
        assert_eq!(
            names.join(" "),
            "fs.execute@1 fs.write_file@1 fs.read_file@1 fs.read_dir@1 fs.remove_dir@1 \
             fs.remove_file@1 fs.make_char@1 fs.make_dir@1 fs.make_reg@1 fs.make_sock@1 \
             fs.make_fifo@1 fs.make_block@1 fs.make_sym@1 fs.refer@2 fs.truncate@3 \
             net.bind_tcp@4 net.connect_tcp@4 fs.ioctl_dev@5 scope.abstract_unix_socket@6 \
             scope.signal@6 restrict_self.log_same_exec_off@7 restrict_self.log_new_exec_on@7 \
             restrict_self.log_subdomains_off@7 restrict_self.tsync@8 fs.resolve_unix@9"
        );
        // The whole report as a string: key order is part of what stays the same.
        let json = |abi: HostSupport| serde_json::to_string(&LandlockInfo::from_abi(abi)).unwrap();
        assert!(
            json(Ok(7)).starts_with(r#"{"abi":{"status":"available","version":7},"version":7,"#)
        );
        assert!(json(Err(Unavailable::NotBuilt)).starts_with(r#"{"abi":{"status":"not-built"},"#));
        assert!(
            json(Err(Unavailable::DisabledAtBoot)).starts_with(r#"{"abi":{"status":"disabled"},"#)
        );
        assert!(json(Err(Unavailable::Other { errno: 1 }))
            .starts_with(r#"{"abi":{"status":"error","errno":1},"#));
    }
}
