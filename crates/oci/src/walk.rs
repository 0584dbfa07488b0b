//! The whole image graph below a manifest or index, given a way to read content.
//!
//! [`walk`] starts from a root document's bytes and follows every manifest
//! and index it can read through the caller's lookup, yielding each
//! descriptor reachable from the root once, in depth-first order (an index's
//! first manifest, that manifest's config and layers, then the next
//! manifest). It is pure: the lookup is the only way it sees content, so the
//! store decides where bytes come from and whether to verify them.
//!
//! Implementation notes: a child the lookup cannot find, or whose bytes do
//! not parse, is still yielded (it is referenced) but not descended into.
//! Descriptors are deduplicated by digest, which also stops cycles, and
//! nesting is cut at [`MAX_DEPTH`] so a lookup that invents ever new
//! documents cannot make the walk run forever.

use std::collections::HashSet;

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::manifest::{Manifest, ManifestError};
use crate::media;

/// How many levels of manifests and indexes below the root are followed.
pub const MAX_DEPTH: usize = 8;

/// Every descriptor reachable from the root document, each once; the root itself is not included.
pub fn walk<F>(root: &[u8], media_type: &str, lookup: F) -> Result<Vec<Descriptor>, ManifestError>
where
    F: Fn(&Digest) -> Option<Vec<u8>>,
{
    let root = Manifest::parse(root, media_type)?;
    let mut walker = Walker { lookup, seen: HashSet::new(), out: Vec::new() };
    walker.visit(root.children, 1);
    Ok(walker.out)
}

struct Walker<F> {
    lookup: F,
    seen: HashSet<Digest>,
    out: Vec<Descriptor>,
}

impl<F: Fn(&Digest) -> Option<Vec<u8>>> Walker<F> {
    fn visit(&mut self, children: Vec<Descriptor>, depth: usize) {
        for child in children {
            if !self.seen.insert(child.digest.clone()) {
                continue;
            }
            let descend = depth < MAX_DEPTH && media::is_manifest_or_index(&child.media_type);
            let grandchildren = descend
                .then(|| (self.lookup)(&child.digest))
                .flatten()
                .and_then(|bytes| Manifest::parse(&bytes, &child.media_type).ok());
            self.out.push(child);
            if let Some(manifest) = grandchildren {
                self.visit(manifest.children, depth + 1);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A content store in a map, holding documents by their digest.
    #[derive(Default)]
    struct Store(HashMap<Digest, Vec<u8>>);

    impl Store {
        fn put(&mut self, json: String) -> Descriptor {
            let digest = Digest::sha256_of(json.as_bytes());
            let size = json.len() as u64;
            self.0.insert(digest.clone(), json.into_bytes());
            let doc: serde_json::Value = serde_json::from_slice(&self.0[&digest]).unwrap();
            Descriptor::new(digest, size, doc["mediaType"].as_str().unwrap())
        }

        fn get(&self, d: &Digest) -> Option<Vec<u8>> {
            self.0.get(d).cloned()
        }
    }

    fn blob(name: &str, media_type: &str) -> Descriptor {
        Descriptor::new(Digest::sha256_of(name.as_bytes()), name.len() as u64, media_type)
    }

    fn manifest(config: &Descriptor, layers: &[&Descriptor]) -> String {
        serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": layers})
            .to_string()
    }

    fn index(media_type: &str, manifests: &[&Descriptor]) -> String {
        serde_json::json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}).to_string()
    }

    fn digests(ds: &[Descriptor]) -> Vec<&Digest> {
        ds.iter().map(|d| &d.digest).collect()
    }

    #[test]
    fn index_to_manifests_to_config_and_layers() {
        let mut store = Store::default();
        let (c1, c2) = (blob("c1", media::OCI_CONFIG), blob("c2", media::OCI_CONFIG));
        let (shared, l1, l2) =
            (blob("base", media::OCI_LAYER_GZIP), blob("l1", media::OCI_LAYER_GZIP), blob("l2", media::OCI_LAYER_ZSTD));
        let m1 = store.put(manifest(&c1, &[&shared, &l1]));
        let m2 = store.put(manifest(&c2, &[&shared, &l2]));
        let root = index(media::OCI_INDEX, &[&m1, &m2]);
        let all = walk(root.as_bytes(), media::OCI_INDEX, |d| store.get(d)).unwrap();
        assert_eq!(
            digests(&all),
            vec![&m1.digest, &c1.digest, &shared.digest, &l1.digest, &m2.digest, &c2.digest, &l2.digest]
        );
    }

    #[test]
    fn nested_indexes_are_followed() {
        let mut store = Store::default();
        let c = blob("c", media::OCI_CONFIG);
        let m = store.put(manifest(&c, &[]));
        let inner = store.put(index(media::DOCKER_MANIFEST_LIST, &[&m]));
        let all = walk(index(media::OCI_INDEX, &[&inner]).as_bytes(), "", |d| store.get(d)).unwrap();
        assert_eq!(digests(&all), vec![&inner.digest, &m.digest, &c.digest]);
    }

    #[test]
    fn missing_and_unreadable_children_are_listed_not_followed() {
        let mut store = Store::default();
        let absent = blob("absent", media::OCI_MANIFEST);
        let garbage = blob("garbage", media::OCI_MANIFEST);
        store.0.insert(garbage.digest.clone(), b"not json".to_vec());
        let root = index(media::OCI_INDEX, &[&absent, &garbage]);
        let all = walk(root.as_bytes(), media::OCI_INDEX, |d| store.get(d)).unwrap();
        assert_eq!(all, vec![absent, garbage]);
    }

    #[test]
    fn layers_are_never_looked_up() {
        let c = blob("c", media::OCI_CONFIG);
        let l = blob("l", media::OCI_LAYER_GZIP);
        let looked_up = std::cell::RefCell::new(Vec::new());
        let all = walk(manifest(&c, &[&l]).as_bytes(), media::OCI_MANIFEST, |d| {
            looked_up.borrow_mut().push(d.clone());
            None
        })
        .unwrap();
        assert_eq!(all, vec![c, l]);
        assert!(looked_up.borrow().is_empty());
    }

    #[test]
    fn cycles_terminate() {
        // Content addressing makes real cycles impossible, but a lookup may lie.
        let a = blob("a", media::OCI_INDEX);
        let b = blob("b", media::OCI_INDEX);
        let (ia, ib) = (index(media::OCI_INDEX, &[&b]), index(media::OCI_INDEX, &[&a]));
        let all = walk(ia.as_bytes(), media::OCI_INDEX, |d| {
            Some(if *d == a.digest { ia.clone() } else { ib.clone() }.into_bytes())
        })
        .unwrap();
        assert_eq!(all, vec![b, a]);
    }

    #[test]
    fn endless_invented_documents_stop_at_max_depth() {
        let counter = std::cell::Cell::new(0u32);
        let next = || {
            counter.set(counter.get() + 1);
            blob(&format!("doc{}", counter.get()), media::OCI_INDEX)
        };
        let root = index(media::OCI_INDEX, &[&next()]);
        let all = walk(root.as_bytes(), media::OCI_INDEX, |_| Some(index(media::OCI_INDEX, &[&next()]).into_bytes()))
            .unwrap();
        assert_eq!(all.len(), MAX_DEPTH);
    }

    #[test]
    fn a_bad_root_is_an_error() {
        assert!(walk(b"{}", "", |_| None).is_err());
    }
}
