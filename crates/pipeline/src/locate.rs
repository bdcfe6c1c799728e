//! Where each key of the pipeline file is written, so that problems found after parsing
//! (an unknown store, a duplicate name, bad SQL) can point at a line and column too.
//!
//! serde_yaml keeps no positions once a document is deserialized, so the text is read a
//! second time with saphyr's event parser, which reports a span for every event.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

/// Key path (`steps[2].sql_file`, `stores.data.url`) -> (line, column), both 1-based.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    positions: HashMap<String, (usize, usize)>,
    /// Keys written twice in one mapping, in the order met.
    duplicates: Vec<DuplicateKey>,
}

/// A key written twice in one mapping: YAML readers keep the last silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The key's path, e.g. `vars.as_of`.
    pub path: String,
    pub first: (usize, usize),
    pub second: (usize, usize),
}

impl KeyIndex {
    /// Indexes `text`; a document that does not parse yields an empty index (the YAML
    /// error itself is reported by the deserializer, with its own position).
    pub fn new(text: &str) -> KeyIndex {
        let mut builder = Builder::default();
        if Parser::new_from_str(text)
            .load(&mut builder, false)
            .is_err()
        {
            return KeyIndex::default();
        }
        KeyIndex {
            positions: builder.positions,
            duplicates: builder.duplicates,
        }
    }

    /// Keys written twice in one mapping.
    pub fn duplicates(&self) -> &[DuplicateKey] {
        &self.duplicates
    }

    /// The position of `key`, or of its nearest enclosing key that is written in the file
    /// (a missing `steps[2].sql` points at `steps[2]`).
    pub fn locate(&self, key: &str) -> Option<(usize, usize)> {
        let mut key = key;
        loop {
            if let Some(position) = self.positions.get(key) {
                return Some(*position);
            }
            let cut = key.rfind(['.', '['])?;
            key = &key[..cut];
        }
    }
}

enum Frame {
    Mapping {
        path: String,
        key: Option<String>,
        /// Each key of this mapping met so far, where it is written.
        keys: HashMap<String, (usize, usize)>,
    },
    Sequence {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
    duplicates: Vec<DuplicateKey>,
}

impl Builder {
    fn record(&mut self, path: String, span: &Span) {
        self.positions
            .entry(path)
            .or_insert((span.start.line(), span.start.col() + 1));
    }

    /// The path of the value that starts now, recorded where it starts.
    fn value_path(&mut self, span: &Span) -> String {
        let path = match self.stack.last() {
            Some(Frame::Mapping {
                path,
                key: Some(key),
                ..
            }) => join(path, key),
            Some(Frame::Sequence { path, index }) => format!("{path}[{index}]"),
            _ => String::new(),
        };
        self.record(path.clone(), span);
        path
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key, .. }) => *key = None,
            Some(Frame::Sequence { index, .. }) => *index += 1,
            None => {}
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        match event {
            Event::MappingStart(..) => {
                let path = self.value_path(&span);
                self.stack.push(Frame::Mapping {
                    path,
                    key: None,
                    keys: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(&span);
                self.stack.push(Frame::Sequence { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Scalar(value, ..) => {
                if let Some(Frame::Mapping {
                    path,
                    key: key @ None,
                    keys,
                }) = self.stack.last_mut()
                {
                    let full = join(path, &value);
                    let here = (span.start.line(), span.start.col() + 1);
                    if let Some(&first) = keys.get(value.as_ref()) {
                        self.duplicates.push(DuplicateKey {
                            path: full.clone(),
                            first,
                            second: here,
                        });
                    } else {
                        keys.insert(value.to_string(), here);
                    }
                    *key = Some(value.into_owned());
                    self.record(full, &span);
                } else {
                    self.value_path(&span);
                    self.value_done();
                }
            }
            Event::Alias(..) => {
                self.value_path(&span);
                self.value_done();
            }
            _ => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: shop
stores:
  data: { url: \"file://x\" }
steps:
  - name: a
    sql: SELECT 1
  - { name: b, sql_file: b.sql }
";

    #[test]
    fn finds_keys_in_block_and_flow_style() {
        let index = KeyIndex::new(TEXT);
        assert_eq!(index.locate("name"), Some((1, 1)));
        assert_eq!(index.locate("stores.data.url"), Some((3, 11)));
        assert_eq!(index.locate("steps[0].sql"), Some((6, 5)));
        assert_eq!(index.locate("steps[1].sql_file"), Some((7, 16)));
    }

    #[test]
    fn keys_written_twice_in_one_mapping_are_found() {
        let index = KeyIndex::new(
            "vars:\n  as_of: a\n  day: b\n  as_of: c\nsteps:\n  - { name: x }\n  - { name: x }\n",
        );
        assert_eq!(
            index.duplicates(),
            [DuplicateKey {
                path: "vars.as_of".to_string(),
                first: (2, 3),
                second: (4, 3),
            }]
        );
    }

    #[test]
    fn falls_back_to_the_enclosing_key() {
        let index = KeyIndex::new(TEXT);
        assert_eq!(index.locate("steps[0].kind"), Some((5, 5)));
        assert_eq!(index.locate("segment.k"), None);
    }
}
