//! One read for many callers without weakening read-your-writes: a caller takes the
//! answer of a read that was sent after it arrived, never of one already under way.
//!
//! Lists ask the directory's `contextCSN` before they answer, so that a list holds every
//! write committed before it. Callers that arrive while such a read is under way wait
//! for it to end and then share the next one, which starts after all of them arrived:
//! at most one read is under way, however many lists run at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The last answer and the read it came from (reads are numbered as they start).
pub struct SharedRead<T, E> {
    started: AtomicU64,
    turn: tokio::sync::Mutex<()>,
    last: Mutex<Option<(u64, Result<T, E>)>>,
}

impl<T: Clone, E: Clone> Default for SharedRead<T, E> {
    fn default() -> Self {
        SharedRead { started: AtomicU64::new(0), turn: tokio::sync::Mutex::new(()), last: Mutex::new(None) }
    }
}

impl<T: Clone, E: Clone> SharedRead<T, E> {
    /// The answer of `read` as sent after this call began: one this call makes, or one
    /// another caller made that started later than this call began. A failure is shared
    /// alike, so that callers waiting behind a directory that does not answer are not
    /// each made to wait for their own timeout.
    pub async fn get<F, Fut>(&self, read: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let arrived = self.started.load(Ordering::SeqCst);
        let _turn = self.turn.lock().await;
        if let Some((n, value)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            // Read `n` started after `arrived` was read: it was sent after this call began.
            if *n > arrived {
                return value.clone();
            }
        }
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let value = read().await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, value.clone()));
        value
    }

    /// How many reads were made.
    pub fn reads(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_caller_that_arrives_during_a_read_takes_the_next_one() {
        let shared = Arc::new(SharedRead::<u32, ()>::default());
        let (release_first, first_done) = oneshot::channel::<()>();
        // The first read is under way (the directory holds value 1) ...
        let s = shared.clone();
        let first = tokio::spawn(async move {
            s.get(|| async move {
                first_done.await.unwrap();
                Ok::<_, ()>(1)
            })
            .await
        });
        while shared.reads() == 0 {
            tokio::task::yield_now().await;
        }
        // ... a write commits (the directory now holds 2) and two lists arrive.
        let later: Vec<_> = (0..2)
            .map(|_| {
                let s = shared.clone();
                tokio::spawn(async move { s.get(|| async { Ok::<_, ()>(2) }).await })
            })
            .collect();
        tokio::task::yield_now().await;
        release_first.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        for l in later {
            assert_eq!(l.await.unwrap(), Ok(2), "not the answer of a read sent before it arrived");
        }
        assert_eq!(shared.reads(), 2, "the two later callers shared one read");
    }

    #[tokio::test]
    async fn many_callers_at_once_make_few_reads() {
        let shared = Arc::new(SharedRead::<u64, ()>::default());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let s = shared.clone();
                tokio::spawn(async move {
                    s.get(|| async {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert!(shared.reads() <= 3, "{} reads for 50 callers", shared.reads());
        let before = shared.reads();
        assert_eq!(shared.get(|| async { Ok(8) }).await, Ok(8), "a caller after them reads again");
        assert_eq!(shared.reads(), before + 1);
    }

    #[tokio::test]
    async fn callers_waiting_behind_a_failed_read_sent_after_them_share_its_failure() {
        let shared = Arc::new(SharedRead::<u32, &str>::default());
        let (release, done) = oneshot::channel::<()>();
        let s = shared.clone();
        let first = tokio::spawn(async move {
            s.get(|| async move {
                done.await.unwrap();
                Ok(1)
            })
            .await
        });
        while shared.reads() == 0 {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let s = shared.clone();
                tokio::spawn(async move {
                    s.get(|| async {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Err("timeout")
                    })
                    .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        for w in waiting {
            assert_eq!(w.await.unwrap(), Err("timeout"));
        }
        assert_eq!(shared.reads(), 2, "one failed read for the three");
    }
}
