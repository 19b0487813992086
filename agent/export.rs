//! Sealed batches rebuilt from a SIEM's export, so `logveil verify --export FILE` checks what
//! the SIEM holds against the seal chain, not only the local archive.
//!
//! The export is NDJSON: one document per line, either as the `elasticsearch` sink wrote it
//! or wrapped as a search hit (`{"_index":…,"_id":…,"_source":{…}}`, what a scroll, the
//! `_search` API or elasticdump write). Documents are grouped by `logveil.batch`; each batch
//! is rebuilt from its seal document (the signed header line and signature, verbatim) and its
//! events, each re-encoded in the canonical form of `event.rs` from the fields the sink wrote
//! — so any change to a field, a missing or extra event, or a reordering shows as a payload
//! hash mismatch. Documents without `logveil` fields are not ours and are counted, not read.
//! Events the SIEM refused are not in the export: with `--dead-letter DIR` they are taken
//! from the dead-lettered batch file of the same hash (and said so).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::event::{EventEncoder, Origin};
use crate::seal::{self, file_name, header_hash, Header};

/// One rebuilt batch, as if read from a file named `name`.
#[derive(Debug)]
pub struct Rebuilt {
    /// Its seq, from the documents.
    pub seq: u64,
    /// How findings name it.
    pub name: String,
    /// The batch file's bytes, or why it cannot be rebuilt.
    pub bytes: Result<Vec<u8>, String>,
}

/// What an export held.
#[derive(Debug, Default)]
pub struct Rebuild {
    /// Batches by seq.
    pub batches: Vec<Rebuilt>,
    /// Things worth saying that are not problems.
    pub notes: Vec<String>,
    /// Lines that are not logveil documents.
    pub foreign: u64,
}

#[derive(Default)]
struct Group {
    seq: u64,
    seal: Option<(String, String)>,
    events: BTreeMap<u64, Vec<u8>>,
    bad: Vec<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The canonical event line of an event document.
fn event_line(doc: &Value, lv: &Value) -> Result<Vec<u8>, String> {
    let field = |path: &[&str]| {
        str_at(doc, path).ok_or_else(|| format!("no {} in the document", path.join(".")))
    };
    let ts = field(&["@timestamp"])?;
    let host = field(&["host", "name"])?;
    let source = field(&["log", "file", "path"])?;
    let line = field(&["message"])?;
    let offset = doc["log"]["offset"]
        .as_u64()
        .ok_or("no log.offset in the document")?;
    let job = match &lv["job"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        _ => return Err("logveil.job is not a string".into()),
    };
    let lossy = match &lv["lossy"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err("logveil.lossy is not a boolean".into()),
    };
    let origin = Origin {
        host: host.to_string(),
        job,
    };
    let mut out = Vec::with_capacity(line.len() + 128);
    EventEncoder::new(ts, &origin, source).encode_text(offset, line, lossy, &mut out);
    Ok(out)
}

/// Reads `export` and rebuilds its batches; `dead_letter` supplies refused events.
/// Fails (as a usage error) only when the file cannot be read or a line is not JSON.
pub fn rebuild(export: &Path, dead_letter: Option<&Path>) -> Result<Rebuild, String> {
    let file = std::fs::File::open(export).map_err(|e| format!("{}: {e}", export.display()))?;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut out = Rebuild::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", export.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not JSON: {e}", export.display(), n + 1))?;
        let doc = if v["_source"].is_object() {
            &v["_source"]
        } else {
            &v
        };
        let lv = &doc["logveil"];
        let (Some(hash), Some(seq)) = (lv["batch"].as_str(), lv["seq"].as_u64()) else {
            out.foreign += 1;
            continue;
        };
        let g = groups.entry(hash.to_string()).or_default();
        g.seq = seq;
        let at = format!("line {}", n + 1);
        if lv["seal"].is_object() {
            let header = str_at(lv, &["seal", "header"]);
            let sig = str_at(lv, &["seal", "signature"]);
            let (Some(header), Some(sig)) = (header, sig) else {
                g.bad
                    .push(format!("{at}: seal document without header or signature"));
                continue;
            };
            let new = (header.to_string(), sig.to_string());
            match &g.seal {
                Some(old) if *old != new => g
                    .bad
                    .push(format!("{at}: a second, different seal document")),
                _ => g.seal = Some(new),
            }
            continue;
        }
        let Some(i) = lv["event"].as_u64() else {
            g.bad.push(format!("{at}: no logveil.event"));
            continue;
        };
        match event_line(doc, lv) {
            Ok(bytes) => match g.events.get(&i) {
                Some(old) if *old != bytes => g.bad.push(format!(
                    "{at}: event {i} appears twice, with different content"
                )),
                _ => {
                    g.events.insert(i, bytes);
                }
            },
            Err(e) => g.bad.push(format!("{at}: event {i}: {e}")),
        }
    }
    let mut groups: Vec<(String, Group)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, g)| g.seq);
    for (hash, g) in groups {
        let name = format!("batch {} ({}…)", g.seq, hash.get(..12).unwrap_or(&hash));
        let bytes = assemble(&hash, &g, dead_letter, &mut out.notes, &name);
        out.batches.push(Rebuilt {
            seq: g.seq,
            name,
            bytes,
        });
    }
    Ok(out)
}

fn assemble(
    hash: &str,
    g: &Group,
    dead_letter: Option<&Path>,
    notes: &mut Vec<String>,
    name: &str,
) -> Result<Vec<u8>, String> {
    if !g.bad.is_empty() {
        return Err(g.bad.join("; "));
    }
    let Some((header_line, sig)) = &g.seal else {
        return Err(format!(
            "{} event(s) but no seal document in the export",
            g.events.len()
        ));
    };
    let header: Header = serde_json::from_str(header_line)
        .map_err(|e| format!("the seal document's header is not valid: {e}"))?;
    if let Some((&i, _)) = g.events.range(header.count..).next() {
        return Err(format!(
            "event {i} is past the {} events the seal counts (inserted)",
            header.count
        ));
    }
    let missing: Vec<u64> = (0..header.count)
        .filter(|i| !g.events.contains_key(i))
        .collect();
    let mut refused: Vec<&[u8]> = Vec::new();
    let from_dead = if missing.is_empty() {
        None
    } else {
        dead_letter.and_then(|dir| std::fs::read(dir.join(file_name(g.seq))).ok())
    };
    if !missing.is_empty() {
        let dead = from_dead.as_deref().and_then(|b| seal::parse(b).ok());
        match dead {
            Some(p) if header_hash(p.header_line) == hash => {
                refused = p.payload.split_inclusive(|&b| b == b'\n').collect();
                notes.push(format!(
                    "{name}: {} event(s) not in the export taken from the dead-letter directory (refused by the SIEM): {}",
                    missing.len(),
                    list(&missing)
                ));
            }
            _ => {
                return Err(format!(
                    "{} of {} events are not in the export (events {}); if the SIEM refused them, pass --dead-letter DIR",
                    missing.len(),
                    header.count,
                    list(&missing)
                ))
            }
        }
    }
    let mut bytes = Vec::with_capacity(header_line.len() + sig.len() + 2);
    bytes.extend_from_slice(header_line.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(sig.as_bytes());
    bytes.push(b'\n');
    for i in 0..header.count {
        match g.events.get(&i) {
            Some(e) => bytes.extend_from_slice(e),
            None => bytes.extend_from_slice(refused.get(i as usize).copied().unwrap_or_default()),
        }
    }
    Ok(bytes)
}

/// `0, 3, 7` — at most ten, then `…`.
fn list(v: &[u64]) -> String {
    let mut s: Vec<String> = v.iter().take(10).map(u64::to_string).collect();
    if v.len() > 10 {
        s.push("…".into());
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, SealKey};
    use crate::seal::{seal, Content, Sealed, GENESIS_HASH};
    use crate::sink::encode::{bulk_items, BulkAction, EsMeta};

    fn batch() -> Sealed {
        let key = SealKey::from_pkcs8(&generate().unwrap()).unwrap();
        let origin = Origin {
            host: "r7".into(),
            job: Some("4711".into()),
        };
        let mut payload = Vec::new();
        let enc = EventEncoder::new("2024-05-01T10:00:02.613Z", &origin, "/b/job \"x\".log");
        enc.encode(0, b"token [REDACTED:github-pat]", &mut payload);
        enc.encode(28, b"bad \xff byte\ttab", &mut payload);
        enc.encode(45, b"", &mut payload);
        seal(
            &key,
            1,
            GENESIS_HASH,
            "r7",
            &Content {
                payload,
                count: 3,
                first_ts: "2024-05-01T10:00:02.613Z".into(),
                last_ts: "2024-05-01T10:00:02.613Z".into(),
                masks: Default::default(),
            },
        )
    }

    /// The documents the sink would index: the second line of each bulk item.
    fn docs(b: &Sealed) -> Vec<String> {
        let meta = EsMeta {
            index: "ci".into(),
            action: BulkAction::Create,
        };
        bulk_items(b, &meta)
            .unwrap()
            .iter()
            .map(|i| {
                let t = String::from_utf8(i.lines.clone()).unwrap();
                t.lines().nth(1).unwrap().to_string()
            })
            .collect()
    }

    fn write(dir: &Path, lines: &[String]) -> std::path::PathBuf {
        let p = dir.join("export.ndjson");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    #[test]
    fn an_export_rebuilds_the_sealed_batch_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch();
        let mut d = docs(&b);
        // Any order, search hits or bare documents, duplicates, foreign documents.
        d.reverse();
        d[0] = format!("{{\"_index\":\"ci\",\"_id\":\"x\",\"_source\":{}}}", d[0]);
        d.push(d[1].clone());
        d.push("{\"message\":\"not ours\"}".into());
        let r = rebuild(&write(dir.path(), &d), None).unwrap();
        assert_eq!(r.foreign, 1);
        assert_eq!(r.batches.len(), 1);
        assert_eq!(r.batches[0].seq, 1);
        assert_eq!(r.batches[0].bytes.as_ref().unwrap(), &b.bytes);
    }

    #[test]
    fn missing_events_come_from_the_dead_letter_directory_or_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch();
        let mut d = docs(&b);
        d.remove(1);
        let export = write(dir.path(), &d);
        let r = rebuild(&export, None).unwrap();
        let e = r.batches[0].bytes.as_ref().unwrap_err();
        assert!(
            e.contains("1 of 3 events are not in the export (events 1)"),
            "{e}"
        );
        let dead = dir.path().join("dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(file_name(1)), &b.bytes).unwrap();
        let r = rebuild(&export, Some(&dead)).unwrap();
        assert_eq!(r.batches[0].bytes.as_ref().unwrap(), &b.bytes);
        assert!(r.notes[0].contains("dead-letter"), "{:?}", r.notes);
    }

    #[test]
    fn changed_or_conflicting_events_do_not_rebuild_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch();
        let mut d = docs(&b);
        d[0] = d[0].replace("[REDACTED:github-pat]", "ghp_changed");
        let r = rebuild(&write(dir.path(), &d), None).unwrap();
        assert_ne!(r.batches[0].bytes.as_ref().unwrap(), &b.bytes);
        let mut d = docs(&b);
        d.push(d[0].replace("[REDACTED:github-pat]", "other"));
        let r = rebuild(&write(dir.path(), &d), None).unwrap();
        let e = r.batches[0].bytes.as_ref().unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let d = docs(&b)[..3].to_vec();
        let r = rebuild(&write(dir.path(), &d), None).unwrap();
        let e = r.batches[0].bytes.as_ref().unwrap_err();
        assert!(e.contains("no seal document"), "{e}");
        std::fs::write(dir.path().join("bad.ndjson"), "{\n").unwrap();
        let e = rebuild(&dir.path().join("bad.ndjson"), None).unwrap_err();
        assert!(e.contains("bad.ndjson:1: not JSON"), "{e}");
    }
}
