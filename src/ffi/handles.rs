//! The machinery behind every C entry point: live-handle registry, error statuses, the
//! thread-local last-error message and the panic guard.
//!
//! C handles (`xlmr_model *`, `xlmr_embeddings *`, ...) are never dereferenced: each is
//! the address of an `Arc` kept in a global registry and used as a key. A freed, foreign or
//! made-up pointer is therefore an `XLMR_STATUS_INVALID_ARGUMENT`, not undefined behaviour,
//! and a model freed while another thread is still running on it stays alive until that
//! call returns.

use super::xlmr_status;
use crate::error::Error;
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// A C opaque type and the Rust value behind it.
pub(crate) trait Handle {
    type Inner: Any + Send + Sync;
    /// The C type name, for error messages.
    const NAME: &'static str;
}

type Object = Arc<dyn Any + Send + Sync>;

// A BTreeMap rather than a HashMap: hashbrown points into the middle of its table, which
// valgrind reports as "possibly lost" at exit.
fn live() -> MutexGuard<'static, BTreeMap<usize, Object>> {
    static LIVE: OnceLock<Mutex<BTreeMap<usize, Object>>> = OnceLock::new();
    // A panic while the lock was held cannot leave the map half-updated (insert and
    // remove are single calls), so a poisoned lock is still usable.
    LIVE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `inner` alive until `release` and returns its C handle.
pub(crate) fn register<H: Handle>(inner: H::Inner) -> *mut H {
    // Distinct live objects have distinct addresses only if they are not zero-sized.
    const { assert!(std::mem::size_of::<H::Inner>() > 0) };
    let object = Arc::new(inner);
    let handle = Arc::as_ptr(&object).cast::<H>().cast_mut();
    live().insert(handle as usize, object);
    handle
}

/// The object behind a live handle of kind `H`; `arg` names the argument in errors.
pub(crate) fn lookup<H: Handle>(handle: *const H, arg: &str) -> Result<Arc<H::Inner>, Failure> {
    if handle.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    let object = live().get(&(handle as usize)).cloned();
    object.and_then(|o| o.downcast::<H::Inner>().ok()).ok_or_else(|| {
        Failure::invalid(format!("{arg} is not a live {} (already freed, or a pointer of another kind)", H::NAME))
    })
}

/// Forgets a handle; the object is dropped once no call is using it. NULL is a no-op.
pub(crate) fn release<H: Handle>(handle: *mut H, arg: &str) -> Result<(), Failure> {
    if handle.is_null() {
        return Ok(());
    }
    let mut live = live();
    let key = handle as usize;
    let ours = live.get(&key).is_some_and(|o| {
        let any: &(dyn Any + Send + Sync) = &**o;
        any.is::<H::Inner>()
    });
    if !ours {
        return Err(Failure::invalid(format!("{arg} is not a live {} (freed twice, or a pointer of another kind)", H::NAME)));
    }
    let object = live.remove(&key);
    // Drop outside the lock: dropping a model joins nothing, but keep the lock short.
    drop(live);
    drop(object);
    Ok(())
}

/// A failed call: the status it returns and the message `xlmr_last_error` gives.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: xlmr_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: xlmr_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(xlmr_status::XLMR_STATUS_INVALID_ARGUMENT, format!("invalid argument: {}", message.into()))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        use xlmr_status::*;
        let status = match &e {
            Error::Io { .. } => XLMR_STATUS_IO,
            Error::Format { .. }
            | Error::ForbiddenGlobal { .. }
            | Error::UnsupportedArchitecture { .. }
            | Error::MissingTensor { .. }
            | Error::WrongShape { .. }
            | Error::NonFinite { .. } => XLMR_STATUS_FORMAT,
            Error::Tokenizer(_) | Error::Input(_) => XLMR_STATUS_INPUT,
            Error::InvalidArgument(_) => XLMR_STATUS_INVALID_ARGUMENT,
        };
        Failure::new(status, e.to_string().replace('\n', " "))
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs would cut the C string short; they cannot be shown anyway.
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // `try_with`: during thread teardown the slot may be gone; losing the message is fine.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = text);
}

/// The calling thread's last error message; valid until its next failing call.
pub(crate) fn last_error() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    LAST_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(EMPTY.as_ptr().cast())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic");
    format!("internal error (a bug in xlmr, please report it): {text}")
}

/// Runs one fallible entry point: failures and panics become a status and a message.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> xlmr_status {
    // AssertUnwindSafe: after a panic we only report it; no state the closure touched is
    // used again (results are registered only once complete).
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => xlmr_status::XLMR_STATUS_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            xlmr_status::XLMR_STATUS_INTERNAL
        }
    }
}

/// Runs an entry point that has no status to return (sizes, frees): a failure gives
/// `fallback` and sets the last error.
pub(crate) fn guard_or<T>(fallback: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    let mut value = None;
    let status = guard(|| {
        value = Some(body()?);
        Ok(())
    });
    match (status, value) {
        (xlmr_status::XLMR_STATUS_OK, Some(v)) => v,
        _ => fallback,
    }
}
