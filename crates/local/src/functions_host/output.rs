//! What the handler wrote: its stdout and stderr line by line, and the `Logs` of its invocation responses.
//!
//! Every line goes to tracing (as the real host puts it in its log) and into a bounded buffer that tests scan,
//! e.g. to prove no secret value is ever written.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::broadcast;

/// Lines kept for [`HandlerOutput::lines`]; older ones are dropped first.
const KEPT_LINES: usize = 20_000;
/// Lines a slow [`HandlerOutput::subscribe`] receiver may fall behind before it sees `Lagged`.
const CHANNEL_CAPACITY: usize = 4_096;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// An entry of an invocation response's `Logs`.
    InvocationLog,
}

/// One line the handler produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    /// The handler process that wrote it (a restarted handler has a new pid).
    pub pid: u32,
    pub text: String,
}

/// The handler's output, shared between the reader tasks and whoever inspects it.
#[derive(Debug, Clone)]
pub struct HandlerOutput {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std Mutex: it is held only to push or copy lines, never across an await.
    lines: Mutex<VecDeque<OutputLine>>,
    sender: broadcast::Sender<OutputLine>,
}

impl Default for HandlerOutput {
    fn default() -> Self {
        HandlerOutput {
            inner: Arc::new(Inner {
                lines: Mutex::new(VecDeque::new()),
                sender: broadcast::channel(CHANNEL_CAPACITY).0,
            }),
        }
    }
}

impl HandlerOutput {
    /// Every line kept so far, oldest first.
    pub fn lines(&self) -> Vec<OutputLine> {
        self.locked().iter().cloned().collect()
    }

    /// Whether any kept line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.locked().iter().any(|line| line.text.contains(needle))
    }

    /// Lines from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OutputLine> {
        self.inner.sender.subscribe()
    }

    pub(crate) fn push(&self, line: OutputLine) {
        match line.stream {
            Stream::Stdout => tracing::info!(target: "handler", pid = line.pid, "{}", line.text),
            Stream::Stderr => tracing::warn!(target: "handler", pid = line.pid, "{}", line.text),
            Stream::InvocationLog => tracing::info!(target: "handler::invocation", pid = line.pid, "{}", line.text),
        }
        {
            let mut lines = self.locked();
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        // No receiver is the normal case, not an error.
        let _ = self.inner.sender.send(line);
    }

    /// Copies `reader` into this buffer line by line until it closes (the process exited).
    pub(crate) async fn capture(self, reader: impl AsyncRead + Unpin, stream: Stream, pid: u32) {
        let mut lines = BufReader::new(reader).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(text)) => self.push(OutputLine { stream, pid, text }),
                Ok(None) => return,
                Err(error) => {
                    // Not UTF-8 or a broken pipe: say so once and stop, rather than spin.
                    tracing::warn!(pid, ?stream, %error, "stopped reading the handler's output");
                    return;
                }
            }
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, VecDeque<OutputLine>> {
        // A poisoned lock only means a panic elsewhere while pushing a line; the lines are still valid.
        self.inner.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_lines_keeps_them_and_broadcasts_them() {
        let output = HandlerOutput::default();
        let mut receiver = output.subscribe();
        let text: &[u8] = b"first\nsecond\r\nlast without newline";
        output.clone().capture(text, Stream::Stderr, 7).await;
        let texts: Vec<String> = output.lines().into_iter().map(|line| line.text).collect();
        assert_eq!(texts, ["first", "second", "last without newline"]);
        assert!(output.contains("second"));
        assert!(!output.contains("third"));
        let first = receiver.recv().await.unwrap();
        assert_eq!((first.stream, first.pid, first.text.as_str()), (Stream::Stderr, 7, "first"));
    }

    #[test]
    fn keeps_a_bounded_number_of_lines() {
        let output = HandlerOutput::default();
        for n in 0..KEPT_LINES + 5 {
            output.push(OutputLine { stream: Stream::Stdout, pid: 1, text: n.to_string() });
        }
        let lines = output.lines();
        assert_eq!(lines.len(), KEPT_LINES);
        assert_eq!(lines[0].text, "5");
    }
}
