//! Everything `tracing` prints during a test, for assertions on log lines.
//!
//! One global subscriber per test binary writes each event to the buffer of
//! the thread that emitted it. A thread-scoped subscriber (`set_default`)
//! would be simpler, but tracing caches each call site's interest across
//! threads, so a test running beside others could capture nothing.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::thread::ThreadId;

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static SINKS: Mutex<Option<HashMap<ThreadId, Captured>>> = Mutex::new(None);

/// Writes to the current thread's buffer, if it has one.
struct ThisThread;

impl Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sink = SINKS
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|sinks| sinks.get(&std::thread::current().id()).cloned());
        match sink {
            Some(mut sink) => sink.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing for its thread when dropped.
pub struct Capturing(ThreadId);

impl Drop for Capturing {
    fn drop(&mut self) {
        if let Some(sinks) = SINKS.lock().unwrap().as_mut() {
            sinks.remove(&self.0);
        }
    }
}

/// Captures every event at every level emitted on this thread until the
/// guard is dropped (use a current-thread runtime, so that every task logs
/// here).
pub fn capture() -> (Captured, Capturing) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThisThread)
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
    let captured = Captured::default();
    let thread = std::thread::current().id();
    SINKS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(thread, captured.clone());
    (captured, Capturing(thread))
}
