//! Long work seen from a terminal: progress bars (what runs, x/N, elapsed, rate, an ETA where the
//! total is known), drawn only when stderr is a terminal and `--quiet` is off, so CI logs and pipes
//! stay clean; and Ctrl-C, which stops the work at the next safe point so the caller can say what
//! finished (a second Ctrl-C ends the process at once).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no progress at all.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress is drawn.
pub fn shown() -> bool {
    !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// A bar over `total` items (seeds, specs, points) with its rate and ETA; hidden when not [`shown`].
pub fn bar(name: &str, total: u64, unit: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:.bold}} {{bar:30.cyan/blue}} {{pos}}/{{len}} {unit}  {{elapsed}}  {{per_sec:0}}  ETA {{eta}}  {{msg}}"
    ))
    .expect("a fixed template parses");
    ProgressBar::new(total).with_style(style).with_prefix(name.to_string())
}

/// A counter with no known end (the states of a search); hidden when not [`shown`].
pub fn counter(name: &str, unit: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&format!(
        "{{prefix:.bold}} {{spinner}} {{human_pos}} {unit}  {{elapsed}}  {{per_sec:0}}  {{msg}}"
    ))
    .expect("a fixed template parses");
    ProgressBar::new_spinner().with_style(style).with_prefix(name.to_string())
}

/// Ctrl-C from now on sets [`interrupted`] instead of killing the process; a second one exits
/// with 130 at once.
pub fn catch_ctrl_c() {
    extern "C" fn on_sigint(_: libc::c_int) {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// Ctrl-C was pressed: start nothing new.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// `work` over `items` on `jobs` threads, each thread taking the next item as it finishes one (a
/// long item holds back no batch), behind a bar; the results come in the items' order, so what is
/// written from them does not depend on which thread finished first. After Ctrl-C no item starts:
/// the results are those of the items that ran, and the caller says so.
pub fn in_parallel<T: Sync, R: Send>(
    name: &str,
    unit: &str,
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bar = bar(name, items.len() as u64, unit);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break out };
                        if interrupted() {
                            break out;
                        }
                        out.push((i, work(item)));
                        bar.inc(1);
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a worker thread panicked")).collect()
    });
    bar.finish_and_clear();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_work_comes_back_in_the_items_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..40).collect();
        // Early items take longest, so the threads finish them out of order.
        let out = in_parallel("x", "items", &items, 3, |&i| {
            std::thread::sleep(std::time::Duration::from_millis(40 - i));
            i * i
        });
        assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
        assert!(in_parallel("x", "items", &[] as &[u64], 2, |&i| i).is_empty());
    }

    #[test]
    fn quiet_hides_progress() {
        set_quiet(true);
        assert!(!shown());
        assert!(bar("x", 10, "seeds").is_hidden() && counter("x", "states").is_hidden());
        set_quiet(false);
    }
}
