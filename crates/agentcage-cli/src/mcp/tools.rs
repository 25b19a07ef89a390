//! The MCP tools of `agentcage mcp`: their schemas, annotations and handlers. Each handler
//! runs execs in the session (see `capture.rs`) on tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentcage::overlay;
use agentcage::session::SessionError;
use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::capture::{self, Cancel, Captured, ExecRequest, Keep};
use super::Config;

/// Default `timeout` of `exec`, seconds: an agent's command must not hang the tool forever.
const DEFAULT_TIMEOUT_S: f64 = 600.0;
/// Default bytes kept of each of stdout and stderr (first half + last half).
const DEFAULT_MAX_OUTPUT: usize = 64 * 1024;
/// Upper bound of `max_output_bytes` (a tool result is held in memory and sent as JSON).
const MAX_OUTPUT_LIMIT: usize = 16 << 20;
/// Default and upper bound of `read_file`'s `max_bytes`.
const DEFAULT_READ: usize = 1 << 20;
const READ_LIMIT: usize = 16 << 20;
/// Entries `list_dir` returns at most.
const LIST_LIMIT: usize = 10_000;
/// Timeout of the file tools' execs.
const FILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why `denials` is empty while the session's exit frames carry no `denials` list
/// (docs/AGENT-API.md, "Denials").
pub const DENIALS_NOTE: &str = "this session does not report denial events (issue #17, \
    --events): a blocked operation shows only as the command's own error here";

/// Where the session's start is: 0 not asked, 1 `session start` running, 2 it returned (the
/// session may exist: `main` stops it by name at the end). A static, not the server's state:
/// `main` reads it after the runtime (and with it the server) is gone.
static START: AtomicU8 = AtomicU8::new(0);

/// A `session start` is running.
pub fn start_in_flight() -> bool {
    START.load(Ordering::SeqCst) == 1
}

/// A `session start` was run (it may have failed: stopping then finds no session).
pub fn started() -> bool {
    START.load(Ordering::SeqCst) == 2
}

/// The server: its configuration and the session (started at the first tool call).
pub struct Server {
    cfg: Arc<Config>,
    session: Mutex<Option<String>>,
}

impl Server {
    pub fn new(cfg: Arc<Config>) -> Server {
        Server {
            cfg,
            session: Mutex::new(None),
        }
    }

    /// The session's name; starts it when this is the first call.
    async fn session(&self) -> Result<String, String> {
        let mut s = self.session.lock().await;
        if let Some(name) = &*s {
            return Ok(name.clone());
        }
        let cfg = self.cfg.clone();
        START.store(1, Ordering::SeqCst);
        let name = tokio::task::spawn_blocking(move || {
            let r = start_session(&cfg);
            START.store(2, Ordering::SeqCst);
            r
        })
        .await
        .map_err(|e| format!("start the session: {e}"))??;
        *s = Some(name.clone());
        Ok(name)
    }

    fn tools(&self) -> Vec<Tool> {
        let open = self.cfg.open_world;
        let net = match (self.cfg.net, self.cfg.allow.is_empty()) {
            ("allow", false) => format!("network: only {}", self.cfg.allow.join(", ")),
            ("host", _) => "network: the host's (not isolated)".into(),
            _ => "network: none".into(),
        };
        // Said once, here: `denials` has no filesystem refusals on such a host.
        let fs = self
            .cfg
            .landlock_note
            .as_ref()
            .map(|n| format!(" Filesystem refusals are not in `denials`: {n}."))
            .unwrap_or_default();
        let exec = Tool::new(
            "exec",
            format!(
                "Run a command in the sandbox (one persistent sandbox for this server: files, \
                 /tmp, HOME and background processes stay between calls; {net}). `command` \
                 is a shell command line (run by sh -c) or an argv array. Returns exit_code \
                 (128+N for signal N, 124 on timeout), stdout, stderr (each cut to \
                 max_output_bytes with a marker), timed_out and the denials seen. A command \
                 the sandbox blocks fails like on a machine without that permission: this is \
                 the sandbox's policy, not a bug to work around.{fs}"
            ),
            schema(json!({
                "type": "object",
                "properties": {
                    "command": {"description": "shell command line (sh -c) or argv array",
                        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "cwd": {"type": "string", "description": "working directory inside (absolute, or relative to the workspace)"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "extra environment variables"},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds (default 600); then SIGTERM, SIGKILL 2 s later, exit_code 124"},
                    "stdin": {"type": "string", "description": "text for the command's stdin (default: empty)"},
                    "max_output_bytes": {"type": "integer", "minimum": 0, "description": "bytes kept of each of stdout and stderr (default 65536)"}
                },
                "required": ["command"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Run a command in the sandbox")
                .read_only(false)
                .destructive(true)
                .idempotent(false)
                .open_world(open),
        );
        let read = Tool::new(
            "read_file",
            "Read a file as the sandbox sees it (subject to its policy).",
            schema(json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "absolute, or relative to the workspace"},
                    "encoding": {"type": "string", "enum": ["utf-8", "base64"], "description": "utf-8 (default; refused for binary files) or base64"},
                    "max_bytes": {"type": "integer", "minimum": 0, "description": "bytes read at most (default 1 MiB); more is reported as truncated"}
                },
                "required": ["path"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Read a file in the sandbox")
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        );
        let write = Tool::new(
            "write_file",
            "Write (replace) a file as the sandbox sees it (subject to its policy: protected \
             paths and anything outside the writable tree are refused).",
            schema(json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "absolute, or relative to the workspace"},
                    "content": {"type": "string"},
                    "encoding": {"type": "string", "enum": ["utf-8", "base64"], "description": "how content is given (default utf-8)"},
                    "create_dirs": {"type": "boolean", "description": "create missing parent directories (default false)"}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Write a file in the sandbox")
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        );
        let list = Tool::new(
            "list_dir",
            "List a directory as the sandbox sees it: name, type (f file, d directory, l \
             symlink, ...) and size of each entry.",
            schema(json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "absolute, or relative to the workspace (default: the workspace)"}
                },
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("List a directory in the sandbox")
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        );
        let mut tools = vec![exec, read, write, list];
        if self.cfg.overlay.is_some() {
            tools.push(
                Tool::new(
                    "diff",
                    "What the sandbox changed in the workspace so far: the workspace is an \
                     overlay, every write waits there for the user's review (the user commits \
                     or discards; no tool can). Lists each change (path, kind: added, \
                     modified, mode, retyped, deleted; type, modes, size, symlink target) and \
                     the `sensitive` ones (git hooks and config, direnv, editor, CI and agent \
                     config: they run code outside the sandbox, the user reviews them first); \
                     with `patch`, a unified diff of the text files.",
                    schema(json!({
                        "type": "object",
                        "properties": {
                            "paths": {"type": "array", "items": {"type": "string"}, "description": "only changes at or below these paths (relative to the workspace, or absolute inside it)"},
                            "patch": {"type": "boolean", "description": "also return a unified diff of the text files (default false)"},
                            "max_output_bytes": {"type": "integer", "minimum": 0, "description": "bytes of the patch kept (default 65536)"}
                        },
                        "additionalProperties": false
                    })),
                )
                .with_annotations(
                    ToolAnnotations::with_title("Show the changes waiting for review")
                        .read_only(true)
                        .destructive(false)
                        .idempotent(true)
                        .open_world(false),
                ),
            );
        }
        tools
    }

    async fn call(
        &self,
        name: &str,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        // Cancelled by the client (notifications/cancelled), or the server is ending.
        let ct = &context.ct;
        // Not cancellable: a start abandoned half-way would leave a session this server
        // does not know (the next call's start would find the name taken).
        let session = self.session().await.map_err(ToolError::msg)?;
        let call = Call {
            session: session.clone(),
            cancel: Arc::new(Cancel::default()),
        };
        let cancel = call.cancel.clone();
        let work: Box<dyn FnOnce() -> Result<CallToolResult, ToolError> + Send> = match name {
            "exec" => {
                let mut req = exec_request(args)?;
                req.cancel = Some(call.cancel.clone());
                Box::new(move || exec_tool(&call.session, &req))
            }
            "read_file" => {
                let (path, base64, max) = read_args(args)?;
                Box::new(move || read_tool(&call, &path, base64, max))
            }
            "write_file" => {
                let a = write_args(args)?;
                Box::new(move || write_tool(&call, a))
            }
            "list_dir" => {
                let path = opt_str(args, "path")?.unwrap_or_else(|| ".".into());
                Box::new(move || list_tool(&call, &path))
            }
            "diff" => {
                let a = diff_args(args)?;
                let dir = self.cfg.overlay.clone().ok_or_else(|| {
                    ToolError::msg("no overlay: the server runs without --overlay")
                })?;
                Box::new(move || diff_tool(&dir, &a))
            }
            _ => return Err(ToolError::msg(format!("no tool {name:?}"))),
        };
        let mut worker = tokio::task::spawn_blocking(work);
        let joined = tokio::select! {
            r = &mut worker => r,
            _ = ct.cancelled() => {
                // notifications/cancelled: kill the exec (its process group), then let the
                // worker see its end. rmcp drops the response of a cancelled request.
                if let Some(id) = cancel.cancel() {
                    let c = cancel.clone();
                    tokio::task::spawn_blocking(move || capture::kill(&session, id, &c));
                }
                worker.await
            }
        };
        joined.map_err(|e| ToolError::msg(format!("the tool's worker failed: {e}")))?
    }
}

/// What a tool's execs need: the session, and the call's cancellation.
struct Call {
    session: String,
    cancel: Arc<Cancel>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentcage", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Every tool runs inside one agentcage sandbox (a session): commands, files and \
                 directories are the sandbox's view, subject to its policy. Denied operations \
                 are the policy's decision.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult {
            tools: self.tools(),
            ..ListToolsResult::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.tools().iter().any(|t| t.name == request.name) {
            return Err(ErrorData::invalid_params(
                format!("no tool {:?}", request.name),
                None,
            ));
        }
        let args = request.arguments.unwrap_or_default();
        let result = match self.call(&request.name, &args, &context).await {
            Ok(r) => r,
            Err(e) => e.into_result(),
        };
        Ok(result.into())
    }
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(JsonObject::new()),
    }
}

/// A tool-level error: the text the model reads, and structured details.
pub struct ToolError {
    message: String,
    details: Value,
}

impl ToolError {
    fn msg(message: impl Into<String>) -> ToolError {
        let message = message.into();
        ToolError {
            details: json!({"error": {"kind": "tool", "message": message}}),
            message,
        }
    }

    fn into_result(self) -> CallToolResult {
        let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
            "agentcage: {}",
            self.message
        ))]);
        r.structured_content = Some(self.details);
        r
    }
}

impl From<SessionError> for ToolError {
    fn from(e: SessionError) -> ToolError {
        let mut message = e.to_string();
        if let Some(h) = e.hint() {
            message.push_str(&format!(" (hint: {h})"));
        }
        let (kind, code) = match &e {
            SessionError::Refused {
                kind, exit_code, ..
            } => (kind.clone(), *exit_code),
            _ => ("session".to_string(), Some(125)),
        };
        ToolError {
            details: json!({"error": {"kind": kind, "message": e.to_string(), "hint": e.hint(), "exit_code": code}}),
            message,
        }
    }
}

/// `agentcage session start --name N -q --events --die-with-parent <this command's flags>`;
/// its name, or its message.
fn start_session(cfg: &Config) -> Result<String, String> {
    let out = std::process::Command::new(&cfg.exe)
        // --events: every exec's denials come back in its exit frame (docs/SESSIONS.md).
        // --die-with-parent: the session stops when this server exits, even by SIGKILL.
        .args([
            "session",
            "start",
            "--name",
            &cfg.name,
            "-q",
            "--events",
            "--die-with-parent",
        ])
        .args(&cfg.forward)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run {} session start: {e}", cfg.exe.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "the sandbox could not be started (session start exited with {}): {}",
            out.status.code().unwrap_or(-1),
            stderr.trim()
        ));
    }
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if name != cfg.name {
        return Err(format!(
            "session start printed {name:?}, not {:?}",
            cfg.name
        ));
    }
    Ok(name)
}

fn opt_str(args: &JsonObject, key: &str) -> Result<Option<String>, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ToolError::msg(format!("`{key}` must be a string"))),
    }
}

fn opt_usize(args: &JsonObject, key: &str, default: usize, max: usize) -> Result<usize, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n as usize <= max => Ok(n as usize),
            _ => Err(ToolError::msg(format!(
                "`{key}` must be an integer from 0 to {max}"
            ))),
        },
    }
}

fn encoding_is_base64(args: &JsonObject) -> Result<bool, ToolError> {
    match opt_str(args, "encoding")?.as_deref() {
        None | Some("utf-8") | Some("utf8") => Ok(false),
        Some("base64") => Ok(true),
        Some(o) => Err(ToolError::msg(format!(
            "`encoding` must be utf-8 or base64, not {o:?}"
        ))),
    }
}

fn no_nul(what: &str, s: &str) -> Result<(), ToolError> {
    if s.contains('\0') {
        return Err(ToolError::msg(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

fn exec_request(args: &JsonObject) -> Result<ExecRequest, ToolError> {
    let argv = match args.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            vec!["sh".to_string(), "-c".to_string(), s.clone()]
        }
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ToolError::msg("`command` array items must be strings"))?,
        _ => {
            return Err(ToolError::msg(
                "`command` is required: a non-empty shell command line or argv array",
            ))
        }
    };
    for a in &argv {
        no_nul("`command`", a)?;
    }
    let mut env = BTreeMap::new();
    match args.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = v
                    .as_str()
                    .ok_or_else(|| ToolError::msg(format!("`env.{k}` must be a string")))?;
                if k.is_empty() || k.contains('=') {
                    return Err(ToolError::msg(format!("bad variable name {k:?} in `env`")));
                }
                no_nul("`env`", k)?;
                no_nul("`env`", v)?;
                env.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(ToolError::msg("`env` must be an object of strings")),
    }
    let cwd = opt_str(args, "cwd")?;
    if let Some(c) = &cwd {
        no_nul("`cwd`", c)?;
    }
    let timeout = match args.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_S,
        Some(v) => match v.as_f64() {
            Some(t) if t > 0.0 && t.is_finite() && t < 1e9 => t,
            _ => {
                return Err(ToolError::msg(
                    "`timeout` must be a positive number of seconds",
                ))
            }
        },
    };
    let stdin = opt_str(args, "stdin")?.map(String::into_bytes);
    let max = opt_usize(
        args,
        "max_output_bytes",
        DEFAULT_MAX_OUTPUT,
        MAX_OUTPUT_LIMIT,
    )?;
    Ok(ExecRequest {
        argv,
        env,
        cwd,
        timeout: Some(Duration::from_secs_f64(timeout)),
        stdin,
        keep: Keep {
            head: max - max / 2,
            tail: max / 2,
        },
        cancel: None,
    })
}

/// The JSON of an exec result (the MCP result's structured content, and its text).
pub fn exec_json(c: &Captured) -> Value {
    let mut v = json!({
        "exit_code": c.exit.status,
        "signal": c.exit.signal,
        "timed_out": c.exit.timed_out,
        "stdout": String::from_utf8_lossy(&c.stdout.bytes()),
        "stderr": String::from_utf8_lossy(&c.stderr.bytes()),
        "stdout_truncated": c.stdout.truncated(),
        "stderr_truncated": c.stderr.truncated(),
        "stdout_bytes": c.stdout.total(),
        "stderr_bytes": c.stderr.total(),
        "output_open": c.output_open,
        "wall_ms": c.wall.as_millis() as u64,
    });
    match &c.denials {
        Some(d) => {
            v["denials"] = Value::Array(d.clone());
            v["denials_dropped"] = c.denials_dropped.into();
        }
        None => {
            v["denials"] = json!([]);
            v["denials_note"] = DENIALS_NOTE.into();
        }
    }
    v
}

fn success(v: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
    r.structured_content = Some(v);
    r
}

fn exec_tool(session: &str, req: &ExecRequest) -> Result<CallToolResult, ToolError> {
    let c = capture::exec(session, req)?;
    Ok(success(exec_json(&c)))
}

/// A file tool's exec; a non-zero exit is a tool error with the command's stderr.
fn file_exec(
    call: &Call,
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    keep: Keep,
    what: &str,
) -> Result<Captured, ToolError> {
    let c = capture::exec(
        &call.session,
        &ExecRequest {
            argv,
            timeout: Some(FILE_TIMEOUT),
            stdin,
            keep,
            cancel: Some(call.cancel.clone()),
            ..ExecRequest::default()
        },
    )?;
    if c.exit.status != 0 {
        let err = String::from_utf8_lossy(&c.stderr.bytes())
            .trim()
            .to_string();
        let why = if c.exit.timed_out {
            "timed out".to_string()
        } else {
            format!("exit {}", c.exit.status)
        };
        let mut details = exec_json(&c);
        details["error"] = json!({"kind": "command", "message": err, "exit_code": c.exit.status});
        return Err(ToolError {
            message: format!("{what}: {err} ({why})"),
            details,
        });
    }
    Ok(c)
}

/// A path for a command line: one starting with `-` would be read as an option.
fn path_arg(p: &str) -> String {
    if p.starts_with('-') {
        format!("./{p}")
    } else {
        p.to_string()
    }
}

fn read_args(args: &JsonObject) -> Result<(String, bool, usize), ToolError> {
    let path = opt_str(args, "path")?.ok_or_else(|| ToolError::msg("`path` is required"))?;
    no_nul("`path`", &path)?;
    let max = opt_usize(args, "max_bytes", DEFAULT_READ, READ_LIMIT)?;
    Ok((path, encoding_is_base64(args)?, max))
}

fn read_tool(
    call: &Call,
    path: &str,
    base64: bool,
    max: usize,
) -> Result<CallToolResult, ToolError> {
    let argv = vec!["cat".into(), "--".into(), path.into()];
    let keep = Keep { head: max, tail: 0 };
    let c = file_exec(call, argv, None, keep, &format!("read {path}"))?;
    let bytes = c.stdout.raw();
    let content = if base64 {
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    } else {
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) if c.stdout.truncated() => {
                return Err(ToolError::msg(format!(
                    "read {path}: not UTF-8 within the first {max} bytes (use encoding base64)"
                )))
            }
            Err(_) => {
                return Err(ToolError::msg(format!(
                    "read {path}: not UTF-8 text (use encoding base64)"
                )))
            }
        }
    };
    Ok(success(json!({
        "path": path,
        "content": content,
        "encoding": if base64 { "base64" } else { "utf-8" },
        "size": c.stdout.total(),
        "truncated": c.stdout.truncated(),
    })))
}

struct WriteArgs {
    path: String,
    content: Vec<u8>,
    create_dirs: bool,
}

fn write_args(args: &JsonObject) -> Result<WriteArgs, ToolError> {
    let path = opt_str(args, "path")?.ok_or_else(|| ToolError::msg("`path` is required"))?;
    no_nul("`path`", &path)?;
    let content =
        opt_str(args, "content")?.ok_or_else(|| ToolError::msg("`content` is required"))?;
    let content = if encoding_is_base64(args)? {
        base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| ToolError::msg(format!("`content` is not base64: {e}")))?
    } else {
        content.into_bytes()
    };
    let create_dirs = match args.get("create_dirs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ToolError::msg("`create_dirs` must be a boolean")),
    };
    Ok(WriteArgs {
        path,
        content,
        create_dirs,
    })
}

fn write_tool(call: &Call, a: WriteArgs) -> Result<CallToolResult, ToolError> {
    let script = if a.create_dirs {
        r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#
    } else {
        r#"cat > "$1""#
    };
    let n = a.content.len();
    let argv = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        path_arg(&a.path),
    ];
    file_exec(
        call,
        argv,
        Some(a.content),
        Keep::default(),
        &format!("write {}", a.path),
    )?;
    Ok(success(json!({"path": a.path, "bytes_written": n})))
}

fn list_tool(call: &Call, path: &str) -> Result<CallToolResult, ToolError> {
    no_nul("`path`", path)?;
    let argv = vec![
        "find".into(),
        path_arg(path),
        "-mindepth".into(),
        "1".into(),
        "-maxdepth".into(),
        "1".into(),
        "-printf".into(),
        "%y\\t%s\\t%P\\0".into(),
    ];
    let keep = Keep {
        head: 8 << 20,
        tail: 0,
    };
    let c = file_exec(call, argv, None, keep, &format!("list {path}"))?;
    let raw = c.stdout.raw();
    let mut entries: Vec<Value> = raw
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let s = String::from_utf8_lossy(e);
            let mut it = s.splitn(3, '\t');
            let (t, size, name) = (it.next()?, it.next()?, it.next()?);
            Some(json!({"name": name, "type": t, "size": size.parse::<u64>().ok()}))
        })
        .collect();
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let truncated = entries.len() > LIST_LIMIT || c.stdout.truncated();
    entries.truncate(LIST_LIMIT);
    Ok(success(
        json!({"path": path, "entries": entries, "truncated": truncated}),
    ))
}

struct DiffArgs {
    paths: Vec<PathBuf>,
    patch: bool,
    max: usize,
}

fn diff_args(args: &JsonObject) -> Result<DiffArgs, ToolError> {
    let paths = match args.get("paths") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                let p = v
                    .as_str()
                    .ok_or_else(|| ToolError::msg("`paths` items must be strings"))?;
                no_nul("`paths`", p)?;
                Ok(PathBuf::from(p))
            })
            .collect::<Result<_, ToolError>>()?,
        Some(_) => return Err(ToolError::msg("`paths` must be an array of strings")),
    };
    let patch = match args.get("patch") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ToolError::msg("`patch` must be a boolean")),
    };
    let max = opt_usize(
        args,
        "max_output_bytes",
        DEFAULT_MAX_OUTPUT,
        MAX_OUTPUT_LIMIT,
    )?;
    Ok(DiffArgs { paths, patch, max })
}

/// `p` relative to the workspace `ws` (absolute inside it, or relative), normalized; `..`
/// may not leave it.
fn workspace_relative(ws: &Path, p: &Path) -> Result<PathBuf, ToolError> {
    let rel = if p.is_absolute() {
        p.strip_prefix(ws).map_err(|_| {
            ToolError::msg(format!(
                "{} is not inside the workspace {}",
                p.display(),
                ws.display()
            ))
        })?
    } else {
        p
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => {
                return Err(ToolError::msg(format!(
                    "{} is not inside the workspace {}",
                    p.display(),
                    ws.display()
                )))
            }
        }
    }
    Ok(out)
}

/// The overlay's changes, in this process (`agentcage::overlay`, as `agentcage diff --json`):
/// read-only for the layers and the workspace; like `agentcage diff` it records the
/// conflict base of new changes (`base.json` in the overlay's directory, for `commit`).
fn diff_tool(dir: &Path, a: &DiffArgs) -> Result<CallToolResult, ToolError> {
    let ov = overlay::Overlay::open(dir).map_err(|e| ToolError::msg(format!("diff: {e}")))?;
    let ws = ov.meta.workspace.clone();
    let only = a
        .paths
        .iter()
        .map(|p| workspace_relative(&ws, p))
        .collect::<Result<Vec<_>, _>>()?;
    let changes: Vec<overlay::Change> = overlay::record_base(&ov)
        .map_err(|e| ToolError::msg(format!("diff: {e}")))?
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|p| c.path.starts_with(p)))
        .collect();
    let mut v = crate::overlay::diff_json(&ov, &changes, &[]);
    if let Some(m) = v.as_object_mut() {
        // The overlay's directory is a host path the agent has no use for.
        m.remove("dir");
        m.insert("count".into(), changes.len().into());
    }
    if a.patch {
        let mut p = capture::Stream::new(Keep {
            head: a.max - a.max / 2,
            tail: a.max / 2,
        });
        for c in &changes {
            p.push(crate::overlay::patch(&ov, c).as_bytes());
        }
        v["patch"] = String::from_utf8_lossy(&p.bytes()).into();
        v["patch_truncated"] = p.truncated().into();
    }
    Ok(success(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_paths_stay_in_the_workspace() {
        let ws = Path::new("/w/s");
        let ok = |p: &str| workspace_relative(ws, Path::new(p)).map_err(|e| e.message);
        assert_eq!(ok("a/./b/../c").unwrap(), PathBuf::from("a/c"));
        assert_eq!(ok("/w/s/x/y").unwrap(), PathBuf::from("x/y"));
        assert_eq!(ok("/w/s").unwrap(), PathBuf::new());
        for bad in ["..", "a/../../b", "/w/other", "/w/s/../t"] {
            assert!(ok(bad).is_err(), "{bad}");
        }
    }
}
