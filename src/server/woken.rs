//! [`WokenOnly`]: a request's future is polled again only once something it waits on woke it.
//!
//! A connection's task runs hyper's dispatcher, which polls the request's future whenever the
//! task wakes, for whatever reason: the socket, the request body's flow, the response's
//! writing. The stack under that future is many layers deep, and each poll goes through all of
//! them to find that nothing it waits on is ready. The future is given a waker of its own,
//! which notes that it was woken and wakes the task: a wake for someone else finds the note
//! unset, and the poll stops here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// What the request's future is polled with (see the module's documentation).
pub(crate) struct WokenOnly {
    note: Arc<Note>,
    /// `note` as a waker: made once, so that what the future registers it with sees the same
    /// waker on every poll (`will_wake`), and keeps it without cloning again.
    waker: Waker,
}

struct Note {
    woken: AtomicBool,
    /// The connection's task, woken in turn.
    task: AtomicWaker,
}

impl Wake for Note {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl WokenOnly {
    pub(crate) fn new() -> Self {
        let note = Arc::new(Note {
            // The first poll is never skipped.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(note.clone());
        Self { note, waker }
    }

    /// Polls `future` when it was woken since its last poll (or has not been polled yet),
    /// with its own waker; otherwise it is `Pending` as it was.
    pub(crate) fn poll<F: Future>(&self, future: Pin<&mut F>, cx: &Context<'_>) -> Poll<F::Output> {
        // The task's waker first: a wake from now on reaches it, and one that came before is
        // in the note.
        self.note.task.register(cx.waker());
        if !self.note.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        future.poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    use super::*;

    /// Counts its polls; ready once `ready` is set, until then it keeps the last waker.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: std::sync::Mutex<Option<Waker>>,
    }

    impl Future for &Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_future_is_polled_first_and_then_only_when_it_was_woken() {
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let cx = Context::from_waker(&waker);
        let probe = Probe::default();
        let mut future = &probe;
        let woken = WokenOnly::new();

        assert!(woken.poll(Pin::new(&mut future), &cx).is_pending());
        assert_eq!(
            probe.polls.load(Ordering::Relaxed),
            1,
            "the first poll goes through"
        );
        // The task woke for something else: the future is not polled.
        assert!(woken.poll(Pin::new(&mut future), &cx).is_pending());
        assert_eq!(probe.polls.load(Ordering::Relaxed), 1);

        // What the future waits on is ready: its waker wakes the task, and the next poll
        // reaches it.
        probe.ready.store(true, Ordering::Relaxed);
        probe.waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task was woken");
        assert!(woken.poll(Pin::new(&mut future), &cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_wake_during_a_poll_is_not_lost() {
        /// Wakes itself while polled the first time (as a future out of its task's budget
        /// does), and is ready the second.
        struct WakesItself(usize);
        impl Future for WakesItself {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.0 += 1;
                if self.0 == 1 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(())
            }
        }
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let cx = Context::from_waker(&waker);
        let woken = WokenOnly::new();
        let mut future = WakesItself(0);
        assert!(woken.poll(Pin::new(&mut future), &cx).is_pending());
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
        assert!(woken.poll(Pin::new(&mut future), &cx).is_ready());
    }
}
