//! Answers to accepts, handed to the runtime that asked in one wake-up per
//! batch. A request waiting on a connection lane (`http::lanes`, a
//! single-threaded runtime) was woken by the writer on its own: tokio
//! schedules a task woken from another thread through the runtime's
//! injection queue and writes to its event fd each time, so a batch of
//! forty accepts cost the writer forty `write`s and the lane forty trips
//! through the queue (issue 14). A lane opens a post ([`open_here`]); the
//! writer leaves each answer there and wakes the post's task once; that
//! task, on the lane, hands the answers out (wake-ups within one runtime
//! cost no system call).
//!
//! A post whose task has stopped (its runtime is shutting down) is closed:
//! the writer then answers directly, as for a request made anywhere else.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use tokio::sync::oneshot;

use super::StoreError;
use super::types::Accepted;

type Answer = (oneshot::Sender<Result<Accepted, StoreError>>, Result<Accepted, StoreError>);

/// Where a runtime's answers are left for it.
#[derive(Clone)]
pub(super) struct Post(Arc<Shared>);

#[derive(Default)]
struct Shared {
    mail: Mutex<Mail>,
    open: AtomicBool,
}

#[derive(Default)]
struct Mail {
    answers: Vec<Answer>,
    waker: Option<Waker>,
}

thread_local! {
    static HERE: RefCell<Option<Post>> = const { RefCell::new(None) };
}

/// Opens a post for this thread's runtime and returns the task that hands
/// its answers out: spawn it on the same runtime (a lane does at start).
/// Accepts made on this thread are answered through it from then on.
pub fn open_here() -> impl Future<Output = ()> + Send + 'static {
    let post = Post(Arc::new(Shared { open: AtomicBool::new(true), ..Shared::default() }));
    HERE.with(|here| *here.borrow_mut() = Some(post.clone()));
    let closer = Closer(post.clone());
    async move {
        let _closer = closer;
        loop {
            let answers = std::future::poll_fn(|cx| {
                let mut mail = post.lock();
                if mail.answers.is_empty() {
                    mail.waker = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(std::mem::take(&mut mail.answers))
                }
            })
            .await;
            for (tx, answer) in answers {
                let _ = tx.send(answer);
            }
        }
    }
}

/// Closes the post when its task stops; answers left in it are dropped
/// (their requests see the writer gone; their rows are committed).
struct Closer(Post);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.0.open.store(false, Ordering::Release);
        HERE.with(|here| {
            if here.borrow().as_ref().is_some_and(|p| Arc::ptr_eq(&p.0, &self.0.0)) {
                *here.borrow_mut() = None;
            }
        });
    }
}

impl Post {
    /// This thread's post, if its runtime opened one.
    pub(super) fn here() -> Option<Self> {
        HERE.with(|here| here.borrow().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mail> {
        self.0.mail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves `answer` for `tx`, or gives both back when the post is closed.
    fn leave(
        &self,
        tx: oneshot::Sender<Result<Accepted, StoreError>>,
        answer: Result<Accepted, StoreError>,
    ) -> Option<Answer> {
        if !self.0.open.load(Ordering::Acquire) {
            return Some((tx, answer));
        }
        self.lock().answers.push((tx, answer));
        None
    }

    /// Wakes the post's task, if it waits.
    fn wake(&self) {
        if let Some(waker) = self.lock().waker.take() {
            waker.wake();
        }
    }
}

/// The answers of one batch, by post: each post woken once at the end.
#[derive(Default)]
pub(super) struct Round {
    posts: Vec<Post>,
}

impl Round {
    /// Answers `tx` through `post` when there is an open one, else directly.
    pub(super) fn answer(
        &mut self,
        post: Option<&Post>,
        tx: oneshot::Sender<Result<Accepted, StoreError>>,
        answer: Result<Accepted, StoreError>,
    ) {
        let direct = match post {
            Some(post) => {
                let left = post.leave(tx, answer);
                if left.is_none() && !self.posts.iter().any(|p| Arc::ptr_eq(&p.0, &post.0)) {
                    self.posts.push(post.clone());
                }
                left
            }
            None => Some((tx, answer)),
        };
        if let Some((tx, answer)) = direct {
            let _ = tx.send(answer);
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        for post in &self.posts {
            post.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CallbackId;

    fn stored(seq: i64) -> Result<Accepted, StoreError> {
        Ok(Accepted::Stored { id: CallbackId::new(), seq })
    }

    fn seq(answer: Result<Accepted, StoreError>) -> i64 {
        match answer {
            Ok(Accepted::Stored { seq, .. }) => seq,
            other => panic!("not stored: {other:?}"),
        }
    }

    /// Forty requests waiting on a lane-like runtime each get their own
    /// answer from a batch answered on another thread, the post's task
    /// woken once for all of them.
    #[test]
    fn a_batch_of_answers_reaches_each_request_through_the_post() {
        let (asks, asked) = std::sync::mpsc::channel();
        let lane = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                tokio::spawn(open_here());
                let mut waiting = Vec::new();
                for n in 0..40 {
                    let (tx, rx) = oneshot::channel();
                    asks.send((Post::here(), tx, n)).unwrap();
                    waiting.push(tokio::spawn(async move { (n, seq(rx.await.unwrap())) }));
                }
                let mut got = Vec::new();
                for w in waiting {
                    got.push(tokio::time::timeout(std::time::Duration::from_secs(10), w).await.unwrap().unwrap());
                }
                got
            })
        });
        let mut round = Round::default();
        for _ in 0..40 {
            let (post, tx, n) = asked.recv().unwrap();
            assert!(post.is_some(), "the lane opened a post");
            round.answer(post.as_ref(), tx, stored(1000 + n));
        }
        assert_eq!(round.posts.len(), 1, "one post to wake for the whole batch");
        drop(round);
        let got = lane.join().unwrap();
        assert_eq!(got, (0..40).map(|n| (n, 1000 + n)).collect::<Vec<_>>());
    }

    /// Once the post's task has stopped, answers go to their requests
    /// directly; a thread that opened no post has none.
    #[test]
    fn a_closed_post_is_passed_by() {
        let task = open_here();
        let post = Post::here().unwrap();
        drop(task);
        assert!(Post::here().is_none(), "the thread's post is forgotten when its task stops");
        let (tx, mut rx) = oneshot::channel();
        let mut round = Round::default();
        round.answer(Some(&post), tx, stored(7));
        assert!(round.posts.is_empty());
        assert_eq!(seq(rx.try_recv().unwrap()), 7);
        let elsewhere = std::thread::spawn(|| Post::here().is_none()).join().unwrap();
        assert!(elsewhere);
    }
}
