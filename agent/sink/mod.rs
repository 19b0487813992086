//! Sinks: where sealed batches go. A batch counts as delivered (and its lines' checkpoints
//! may advance) only once every sink has durably written it.

pub mod archive;
pub mod encode;
pub mod forward;
pub mod rfc5424;
pub mod syslog;

use std::io;

use crate::config::SinkConfig;
use crate::seal::Sealed;

pub use archive::ArchiveSink;

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    /// A directory of batch files.
    Archive(ArchiveSink),
}

impl Sink {
    /// Opens (and prepares) a sink.
    pub fn open(cfg: &SinkConfig) -> Result<Sink, String> {
        match cfg {
            SinkConfig::Archive { path } => ArchiveSink::open(path).map(Sink::Archive),
        }
    }

    /// A name for logs.
    pub fn name(&self) -> String {
        match self {
            Sink::Archive(a) => format!("archive {}", a.dir().display()),
        }
    }

    /// Writes a batch durably (blocking).
    pub fn write(&self, batch: &Sealed) -> io::Result<()> {
        match self {
            Sink::Archive(a) => a.write(batch),
        }
    }

    /// The stored bytes of batch `seq`, if this sink keeps batches and has it.
    pub fn read(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        match self {
            Sink::Archive(a) => a.read(seq),
        }
    }

    /// The highest seq this sink holds.
    pub fn highest_seq(&self) -> io::Result<Option<u64>> {
        match self {
            Sink::Archive(a) => a.highest_seq(),
        }
    }
}
