//! The thread pools the batch work runs on.
//!
//! Every parallel call of `curate._native` runs on a rayon pool of a known size, never on rayon's
//! global pool (which would start one thread per machine core in every process, however many CPUs
//! Ray gave it). The size is the call's `num_threads` when that is > 0; otherwise (the default)
//! [`default_threads`], decided from the environment at each call, first match wins:
//!
//! 1. `CURATE_NUM_THREADS`: curate's own override;
//! 2. `RAYON_NUM_THREADS`: rayon's usual variable, honoured as before;
//! 3. `OMP_NUM_THREADS`: Ray sets it in each worker to the CPUs of the task or actor it runs
//!    (at least 1, and 1 for tasks that declare none), so a stage with `cpus=1` computes on one
//!    thread and one with `cpus=4` on four;
//! 4. [`std::thread::available_parallelism`]: the CPUs this process may run on (affinity and
//!    cgroup quota), e.g. in a driver or a plain Python session.
//!
//! A value counts when it starts with a positive integer (`OMP_NUM_THREADS` may be a list such as
//! `4,2`: its first entry is used); anything else is ignored and the next rule applies.
//!
//! Pools are built on first use, one per size, and kept for the life of the process: no call
//! builds a pool once its size has been seen. Their threads are named `curate{size}-{index}`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};

/// The environment variables of the default thread count, in the order they are consulted.
pub const THREAD_VARS: [&str; 3] = ["CURATE_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS"];

/// The leading positive integer of an environment value (`"4"`, `" 4 "`, `"4,2"`), if any.
fn parse_threads(value: &str) -> Option<usize> {
    let first = value.split(',').next()?.trim();
    first.parse::<usize>().ok().filter(|&n| n > 0)
}

/// The thread count of the rule in the module docs, given the variables' values (in the order of
/// [`THREAD_VARS`]) and the fallback.
pub fn threads_from(values: [Option<&str>; 3], available: usize) -> usize {
    values
        .iter()
        .find_map(|v| v.and_then(parse_threads))
        .unwrap_or(available.max(1))
}

/// The number of threads a call with `num_threads = 0` uses now (the rule in the module docs).
///
/// Reads the process environment; the Python bindings call it with the GIL held, so that no
/// Python thread changes `os.environ` meanwhile.
pub fn default_threads() -> usize {
    let values = THREAD_VARS.map(|k| std::env::var(k).ok());
    let available = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    threads_from(
        [
            values[0].as_deref(),
            values[1].as_deref(),
            values[2].as_deref(),
        ],
        available,
    )
}

/// The size of the pool a call with `num_threads` runs on: `num_threads` if > 0, else
/// [`default_threads`].
pub fn resolve(num_threads: usize) -> usize {
    if num_threads > 0 {
        num_threads
    } else {
        default_threads()
    }
}

static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();

/// The pool of `threads` threads (> 0), built on first use and shared by every later call.
pub fn pool(threads: usize) -> Result<Arc<ThreadPool>, ThreadPoolBuildError> {
    let threads = threads.max(1);
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    // A panic while holding the lock cannot leave the map half-updated (insert is the only
    // write), so a poisoned lock is still usable.
    let mut map = pools.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&threads) {
        return Ok(Arc::clone(p));
    }
    let p = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("curate{threads}-{i}"))
            .build()?,
    );
    map.insert(threads, Arc::clone(&p));
    Ok(p)
}

/// The sizes of the pools built so far, ascending.
pub fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = POOLS
        .get()
        .map(|m| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Run `f` on the pool of `threads` threads (> 0; see [`resolve`] for the default).
pub fn install<T: Send>(
    threads: usize,
    f: impl FnOnce() -> T + Send,
) -> Result<T, ThreadPoolBuildError> {
    Ok(pool(threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_order_and_parsing() {
        assert_eq!(threads_from([None, None, None], 8), 8);
        assert_eq!(threads_from([None, None, None], 0), 1);
        assert_eq!(threads_from([None, None, Some("1")], 8), 1);
        assert_eq!(threads_from([None, Some("3"), Some("1")], 8), 3);
        assert_eq!(threads_from([Some("5"), Some("3"), Some("1")], 8), 5);
        assert_eq!(threads_from([None, None, Some("4,2")], 8), 4);
        assert_eq!(threads_from([None, None, Some(" 2 ")], 8), 2);
        // unusable values fall through to the next rule
        assert_eq!(threads_from([Some("0"), Some("many"), Some("2")], 8), 2);
        assert_eq!(threads_from([Some(""), None, Some("-1")], 6), 6);
    }

    #[test]
    fn one_pool_per_size_reused() {
        // sizes no other test uses, so that the counts below are this test's own
        let a = pool(7).unwrap();
        let b = pool(7).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second call must reuse the pool");
        assert_eq!(a.current_num_threads(), 7);
        let c = pool(5).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.current_num_threads(), 5);
        for _ in 0..100 {
            assert_eq!(install(5, rayon::current_num_threads).unwrap(), 5);
        }
        let built = sizes();
        assert_eq!(built.iter().filter(|&&s| s == 7).count(), 1);
        assert_eq!(built.iter().filter(|&&s| s == 5).count(), 1);
        assert!(Arc::ptr_eq(&pool(5).unwrap(), &c));
    }

    #[test]
    fn work_runs_on_named_pool_threads() {
        let name = install(3, || {
            rayon::current_thread_index().map(|i| {
                let n = std::thread::current().name().map(str::to_owned);
                (i, n)
            })
        })
        .unwrap();
        let (i, n) = name.expect("install runs on a pool thread");
        assert_eq!(n.as_deref(), Some(format!("curate3-{i}").as_str()));
    }

    #[test]
    fn zero_means_one_thread_pool() {
        assert_eq!(install(0, rayon::current_num_threads).unwrap(), 1);
        assert_eq!(resolve(9), 9);
        assert!(resolve(0) >= 1);
    }
}
