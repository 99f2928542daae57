//! The stored-node Merkle tree against the RFC definitions in `reference`: roots, proofs,
//! frontiers, read counts, and precise verification errors.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use ledger::merkle::{
    self, EMPTY_ROOT, Frontier, FrontierError, Hash, MemoryTree, MissingNode, NodeId, NodeReader, ProofError,
    RangeError, StoredNode, TreeError, TreeFull, leaf_hash, node_hash,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::reference;

fn leaves(n: u64, salt: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&[salt.to_le_bytes(), i.to_le_bytes()].concat())).collect()
}

fn tree(leaves: &[Hash]) -> MemoryTree {
    MemoryTree::from_leaf_hashes(leaves.iter().copied()).unwrap()
}

fn flip(proof: &[Hash], i: usize, bit: u8) -> Vec<Hash> {
    let mut p = proof.to_vec();
    p[i][usize::from(bit / 8)] ^= 1 << (bit % 8);
    p
}

#[test]
fn hashes_are_domain_separated_sha256() {
    assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(leaf_hash(b"abc"), <[u8; 32]>::from(Sha256::digest(b"\x00abc")));
    let (l, r) = ([1u8; 32], [2u8; 32]);
    assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(Sha256::digest([&[1u8][..], &l, &r].concat())));
}

/// Every size, index and old size up to 64 leaves: the same roots and byte-identical proofs as
/// the RFC definitions, and the proofs verify.
#[test]
fn small_trees_match_the_rfc_exhaustively() {
    let leaves = leaves(64, 0);
    let tree = tree(&leaves);
    assert_eq!(merkle::root(0, &tree).unwrap(), EMPTY_ROOT);
    for size in 1..=64u64 {
        let prefix = &leaves[..size as usize];
        let want_root = reference::mth(prefix);
        assert_eq!(merkle::root(size, &tree).unwrap(), want_root, "root({size})");
        assert_eq!(Frontier::read(size, &tree).unwrap().root(), want_root, "frontier({size})");
        for index in 0..size {
            let proof = merkle::inclusion_proof(index, size, &tree).unwrap();
            assert_eq!(proof, reference::path(index as usize, prefix), "PATH({index}, {size})");
            merkle::verify_inclusion(index, size, &leaves[index as usize], &proof, &want_root).unwrap();
        }
        for old in 1..=size {
            let proof = merkle::consistency_proof(old, size, &tree).unwrap();
            assert_eq!(proof, reference::proof(old as usize, prefix), "PROOF({old}, {size})");
            let old_root = reference::mth(&leaves[..old as usize]);
            merkle::verify_consistency(old, size, &old_root, &want_root, &proof).unwrap();
        }
    }
}

/// Every non-empty subtree of every tree up to 40 leaves: the draft's proofs verify, and
/// break when a bit flips.
#[test]
fn subtree_proofs_of_small_trees_verify_exhaustively() {
    let leaves = leaves(40, 1);
    for size in 1..=40usize {
        let all = &leaves[..size];
        let root = reference::mth(all);
        for start in 0..size {
            for end in start + 1..=size {
                if !reference::is_subtree(start, end) {
                    let err =
                        merkle::verify_subtree_consistency(start as u64, end as u64, size as u64, &root, &root, &[]);
                    assert_eq!(err, Err(ProofError::InvalidSubtree { start: start as u64, end: end as u64 }));
                    continue;
                }
                let sub = reference::mth(&leaves[start..end]);
                let proof = reference::subtree_proof(start, end, all);
                let (s, e, n) = (start as u64, end as u64, size as u64);
                merkle::verify_subtree_consistency(s, e, n, &sub, &root, &proof)
                    .unwrap_or_else(|err| panic!("[{start}, {end}) of {size}: {err}"));
                for i in 0..proof.len() {
                    assert!(merkle::verify_subtree_consistency(s, e, n, &sub, &root, &flip(&proof, i, 7)).is_err());
                }
                for index in start..end {
                    let path = reference::path(index - start, &leaves[start..end]);
                    merkle::verify_subtree_inclusion(index as u64, s, e, &leaves[index], &path, &sub).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random sizes up to a few thousand: proofs equal the RFC's, verify, and fail when
    /// tampered with; every root and frontier agrees with MTH.
    #[test]
    fn proofs_from_stored_nodes_match_and_verify(
        size in 1u64..3000,
        index_frac in 0.0f64..1.0,
        old_frac in 0.0f64..1.0,
        bit in 0u8..=255,
        salt in any::<u64>(),
    ) {
        let leaves = leaves(size, salt);
        let tree = tree(&leaves);
        let root = reference::mth(&leaves);
        prop_assert_eq!(tree.root(), root);
        prop_assert_eq!(merkle::root(size, &tree).unwrap(), root);

        let index = ((size as f64 * index_frac) as u64).min(size - 1);
        let leaf = leaves[index as usize];
        let proof = merkle::inclusion_proof(index, size, &tree).unwrap();
        prop_assert_eq!(&proof, &reference::path(index as usize, &leaves));
        prop_assert_eq!(merkle::verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
        for i in 0..proof.len() {
            prop_assert_eq!(
                merkle::verify_inclusion(index, size, &leaf, &flip(&proof, i, bit), &root),
                Err(ProofError::RootMismatch)
            );
        }
        if index + 1 < size {
            prop_assert!(merkle::verify_inclusion(index + 1, size, &leaf, &proof, &root).is_err());
        }

        let old = ((size as f64 * old_frac) as u64).clamp(1, size);
        let old_root = reference::mth(&leaves[..old as usize]);
        prop_assert_eq!(merkle::root(old, &tree).unwrap(), old_root);
        let proof = merkle::consistency_proof(old, size, &tree).unwrap();
        prop_assert_eq!(&proof, &reference::proof(old as usize, &leaves));
        prop_assert_eq!(merkle::verify_consistency(old, size, &old_root, &root, &proof), Ok(()));
        for i in 0..proof.len() {
            prop_assert!(
                merkle::verify_consistency(old, size, &old_root, &root, &flip(&proof, i, bit))
                    .is_err()
            );
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(merkle::verify_consistency(old, size, &old_root, &root, &longer).is_err());
    }

    /// Appending in arbitrary batches, starting from a frontier read back from storage, stores
    /// exactly the perfect subtrees and ends at the same root as MemoryTree and MTH.
    #[test]
    fn appender_stores_every_perfect_subtree_and_agrees_on_the_root(
        size in 0u64..3000,
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
        salt in any::<u64>(),
    ) {
        let leaves = leaves(size, salt);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| (c * size as f64) as usize).collect();
        cuts.push(0);
        cuts.push(size as usize);
        cuts.sort_unstable();

        let mut stored: BTreeMap<NodeId, Hash> = BTreeMap::new();
        let mut roots = Vec::new();
        for window in cuts.windows(2) {
            let (from, to) = (window[0], window[1]);
            // Each batch resumes from the frontier read out of what has been stored so far, as
            // the server does after a restart.
            let mut frontier = Frontier::read(from as u64, &stored).unwrap();
            let mut out = Vec::new();
            frontier.extend(&leaves[from..to], &mut out).unwrap();
            for StoredNode { id, hash } in out {
                prop_assert!(stored.insert(id, hash).is_none(), "{} stored twice", id);
            }
            roots.push((to, frontier.root()));
            prop_assert_eq!(frontier.size(), to as u64);
        }
        // 2n - popcount(n) perfect subtrees in a tree of n leaves.
        prop_assert_eq!(stored.len() as u64, 2 * size - u64::from(size.count_ones()));
        // Each stored node is its leaf or the hash of its two stored children, which by
        // induction makes it the MTH of the leaves it covers.
        let tree = tree(&leaves);
        for (id, hash) in &stored {
            let want = match id.level {
                0 => leaves[id.index as usize],
                l => node_hash(&stored[&NodeId::new(l - 1, 2 * id.index)], &stored[&NodeId::new(l - 1, 2 * id.index + 1)]),
            };
            prop_assert_eq!(*hash, want, "{}", id);
            prop_assert_eq!(tree.node(id.level, id.index), Ok(*hash));
        }
        // With every stored node right, roots read from them are right, and the frontier's
        // must agree after every batch.
        for (to, root) in roots {
            prop_assert_eq!(root, merkle::root(to as u64, &stored).unwrap(), "root at {}", to);
        }
        prop_assert_eq!(tree.root(), reference::mth(&leaves));
        prop_assert_eq!(tree.frontier().root(), tree.root());
    }

    /// Random valid subtrees of random trees: `start` a multiple of `2^k`, at most `2^k` long.
    #[test]
    fn subtree_proofs_verify(
        size in 1usize..600,
        k in 0u32..10,
        index_frac in 0.0f64..1.0,
        len_frac in 0.0f64..1.0,
        salt in any::<u64>(),
    ) {
        let leaves = leaves(size as u64, salt);
        let start = ((size >> k) as f64 * index_frac) as usize * (1 << k);
        let end = (start + 1 + ((1usize << k) as f64 * len_frac) as usize).min(size);
        prop_assume!(start < end);
        prop_assert!(reference::is_subtree(start, end));
        let (s, e, n) = (start as u64, end as u64, size as u64);
        let sub = reference::mth(&leaves[start..end]);
        let root = reference::mth(&leaves);
        let proof = reference::subtree_proof(start, end, &leaves);
        prop_assert_eq!(merkle::verify_subtree_consistency(s, e, n, &sub, &root, &proof), Ok(()));
        let other = [0xaa; 32];
        prop_assert!(merkle::verify_subtree_consistency(s, e, n, &other, &root, &proof).is_err());
        prop_assert!(merkle::verify_subtree_consistency(s, e, n, &sub, &other, &proof).is_err());
        let index = start + (end - start) / 2;
        let path = reference::path(index - start, &leaves[start..end]);
        prop_assert_eq!(
            merkle::verify_subtree_inclusion(index as u64, s, e, &leaves[index], &path, &sub),
            Ok(())
        );
    }
}

/// A reader that counts node reads, over a tree that is never built: every node is a distinct
/// made-up hash, which is enough to count reads and check which nodes are asked for.
struct Counting {
    size: u64,
    reads: Cell<usize>,
}

impl NodeReader for Counting {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.reads.set(self.reads.get() + 1);
        // Only perfect subtrees that are complete in the tree may be asked for.
        let end = (u128::from(index) + 1) << level;
        if level > 63 || end > u128::from(self.size) {
            return Err(MissingNode(NodeId::new(level, index)));
        }
        Ok(leaf_hash(&[&[level][..], &index.to_le_bytes()].concat()))
    }
}

fn ceil_log2(n: u64) -> usize {
    (64 - (n - 1).leading_zeros()) as usize
}

#[test]
fn proofs_read_at_most_two_nodes_per_level() {
    let mut sizes: Vec<u64> = (1..=300).collect();
    sizes.extend([1 << 20, (1 << 20) + 1, (1 << 40) - 1, 0x5555_5555_5555, (1 << 63) + 12345]);
    sizes.extend([u64::MAX, u64::MAX - 1, 1 << 63]);
    let mut worst = 0.0f64;
    for &size in &sizes {
        let reader = Counting { size, reads: Cell::new(0) };
        let bound = 2 * ceil_log2(size).max(1);
        let near_end = [3, 2, 1].map(|d| size.saturating_sub(d));
        let samples = [[0, 1, 2, 5, size / 3, size / 2].as_slice(), &near_end].concat();
        for &x in samples.iter().filter(|&&x| x < size) {
            reader.reads.set(0);
            let proof = merkle::inclusion_proof(x, size, &reader).unwrap();
            let reads = reader.reads.get();
            assert_eq!(reads, merkle::nodes_for_inclusion(x, size).unwrap().len());
            assert!(reads <= bound, "inclusion({x}, {size}): {reads} reads > {bound}");
            assert!(proof.len() <= ceil_log2(size));
            worst = worst.max(reads as f64 / ceil_log2(size).max(1) as f64);

            let old = x + 1;
            reader.reads.set(0);
            merkle::consistency_proof(old, size, &reader).unwrap();
            let reads = reader.reads.get();
            assert_eq!(reads, merkle::nodes_for_consistency(old, size).unwrap().len());
            assert!(reads <= bound + 1, "consistency({old}, {size}): {reads} reads > {bound} + 1");
        }
        reader.reads.set(0);
        merkle::root(size, &reader).unwrap();
        assert_eq!(reader.reads.get(), size.count_ones() as usize);
    }
    assert!(worst <= 2.0, "worst reads per level: {worst}");
}

#[test]
fn proofs_can_be_built_from_one_batch_of_fetched_nodes() {
    let leaves = leaves(1000, 2);
    let tree = tree(&leaves);
    let (index, size, old) = (123, 999, 500);
    let mut batch: HashMap<NodeId, Hash> = HashMap::new();
    let wanted = [
        merkle::nodes_for_root(size),
        merkle::nodes_for_inclusion(index, size).unwrap(),
        merkle::nodes_for_consistency(old, size).unwrap(),
    ]
    .concat();
    for id in wanted {
        batch.insert(id, tree.node(id.level, id.index).unwrap());
    }
    assert_eq!(merkle::root(size, &batch), merkle::root(size, &tree));
    assert_eq!(
        merkle::inclusion_proof(index, size, &batch).unwrap(),
        merkle::inclusion_proof(index, size, &tree).unwrap()
    );
    assert_eq!(
        merkle::consistency_proof(old, size, &batch).unwrap(),
        merkle::consistency_proof(old, size, &tree).unwrap()
    );
    // A node the batch lacks is reported, not papered over.
    let err = merkle::inclusion_proof(index, 1000, &batch).unwrap_err();
    assert!(matches!(err, TreeError::Read(MissingNode(_))), "{err:?}");
}

#[test]
fn proof_requests_outside_the_tree_are_range_errors() {
    let tree = tree(&leaves(10, 3));
    let cases: [(&str, Result<Vec<NodeId>, RangeError>); 5] = [
        ("index = size", merkle::nodes_for_inclusion(10, 10)),
        ("empty tree", merkle::nodes_for_inclusion(0, 0)),
        ("old > new", merkle::nodes_for_consistency(11, 10)),
        ("old = 0", merkle::nodes_for_consistency(0, 10)),
        ("old = new = 0", merkle::nodes_for_consistency(0, 0)),
    ];
    let want = [
        RangeError::IndexOutOfRange { index: 10, size: 10 },
        RangeError::IndexOutOfRange { index: 0, size: 0 },
        RangeError::SizeOrder { old_size: 11, new_size: 10 },
        RangeError::EmptyOldTree,
        RangeError::EmptyOldTree,
    ];
    for ((name, got), want) in cases.into_iter().zip(want) {
        assert_eq!(got, Err(want), "{name}");
    }
    assert!(matches!(
        merkle::inclusion_proof(10, 10, &tree),
        Err(TreeError::Range(RangeError::IndexOutOfRange { .. }))
    ));
    assert_eq!(merkle::consistency_proof(10, 10, &tree).unwrap(), Vec::<Hash>::new());
}

#[test]
fn verification_errors_say_what_is_wrong() {
    let leaves = leaves(7, 4);
    let tree = tree(&leaves);
    let root = tree.root();
    let root4 = merkle::root(4, &tree).unwrap();
    let root3 = merkle::root(3, &tree).unwrap();
    let incl = merkle::inclusion_proof(2, 7, &tree).unwrap();
    let cons = merkle::consistency_proof(3, 7, &tree).unwrap();
    let other = [9u8; 32];
    let leaf = leaves[2];
    let mut short = cons.clone();
    short.pop();

    type Case = (&'static str, Result<(), ProofError>, Result<(), ProofError>);
    let cases: Vec<Case> = vec![
        ("inclusion ok", merkle::verify_inclusion(2, 7, &leaf, &incl, &root), Ok(())),
        (
            "index beyond size",
            merkle::verify_inclusion(7, 7, &leaf, &incl, &root),
            Err(ProofError::IndexOutOfRange { index: 7, size: 7 }),
        ),
        (
            "inclusion proof too short",
            merkle::verify_inclusion(2, 7, &leaf, &incl[1..], &root),
            Err(ProofError::WrongProofLength { expected: 3, actual: 2 }),
        ),
        ("wrong leaf", merkle::verify_inclusion(2, 7, &other, &incl, &root), Err(ProofError::RootMismatch)),
        ("consistency ok", merkle::verify_consistency(3, 7, &root3, &root, &cons), Ok(())),
        (
            "old size above new",
            merkle::verify_consistency(8, 7, &root3, &root, &cons),
            Err(ProofError::SizeOrder { old_size: 8, new_size: 7 }),
        ),
        (
            "from the empty tree",
            merkle::verify_consistency(0, 7, &EMPTY_ROOT, &root, &[]),
            Err(ProofError::EmptyOldTree),
        ),
        (
            "consistency proof too short",
            merkle::verify_consistency(3, 7, &root3, &root, &short),
            Err(ProofError::WrongProofLength { expected: 4, actual: 3 }),
        ),
        (
            "empty proof, non-power-of-two old size",
            merkle::verify_consistency(3, 7, &root3, &root, &[]),
            Err(ProofError::WrongProofLength { expected: 4, actual: 0 }),
        ),
        ("wrong old root", merkle::verify_consistency(3, 7, &other, &root, &cons), Err(ProofError::OldRootMismatch)),
        ("wrong new root", merkle::verify_consistency(3, 7, &root3, &other, &cons), Err(ProofError::NewRootMismatch)),
        (
            "power-of-two old size, wrong old root",
            merkle::verify_consistency(4, 7, &other, &root, &merkle::consistency_proof(4, 7, &tree).unwrap()),
            Err(ProofError::NewRootMismatch),
        ),
        (
            "power-of-two old size ok",
            merkle::verify_consistency(4, 7, &root4, &root, &merkle::consistency_proof(4, 7, &tree).unwrap()),
            Ok(()),
        ),
        ("same size, same root", merkle::verify_consistency(7, 7, &root, &root, &[]), Ok(())),
        (
            "same size, different roots",
            merkle::verify_consistency(7, 7, &root, &other, &[]),
            Err(ProofError::RootsDiffer { size: 7 }),
        ),
        (
            "same size, non-empty proof",
            merkle::verify_consistency(7, 7, &root, &root, &[root]),
            Err(ProofError::WrongProofLength { expected: 0, actual: 1 }),
        ),
        (
            "subtree end beyond tree",
            merkle::verify_subtree_consistency(4, 8, 7, &root, &root, &[]),
            Err(ProofError::SubtreeBeyondTree { end: 8, size: 7 }),
        ),
        (
            "misaligned subtree",
            merkle::verify_subtree_consistency(2, 5, 7, &root, &root, &[]),
            Err(ProofError::InvalidSubtree { start: 2, end: 5 }),
        ),
        ("empty subtree", merkle::verify_subtree_consistency(3, 3, 7, &EMPTY_ROOT, &other, &[]), Ok(())),
        (
            "empty subtree, wrong hash",
            merkle::verify_subtree_consistency(3, 3, 7, &other, &root, &[]),
            Err(ProofError::SubtreeHashMismatch),
        ),
        (
            "leaf outside subtree",
            merkle::verify_subtree_inclusion(3, 4, 6, &leaf, &[], &root),
            Err(ProofError::IndexOutsideSubtree { index: 3, start: 4, end: 6 }),
        ),
        (
            "subtree inclusion, wrong subtree hash",
            merkle::verify_subtree_inclusion(2, 0, 7, &leaf, &incl, &other),
            Err(ProofError::SubtreeHashMismatch),
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn frontier_parts_are_checked_and_round_trip() {
    let tree = tree(&leaves(13, 5));
    let frontier = tree.frontier().clone();
    let ids: Vec<NodeId> = frontier.nodes().map(|n| n.id).collect();
    assert_eq!(ids, merkle::nodes_for_root(13));
    assert_eq!(ids, [NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]);
    let again = Frontier::from_parts(13, frontier.hashes().to_vec()).unwrap();
    assert_eq!(again, frontier);
    assert_eq!(Frontier::from_parts(13, vec![[0; 32]; 2]), Err(FrontierError { size: 13, expected: 3, actual: 2 }));
    assert_eq!(Frontier::new().root(), EMPTY_ROOT);
}

#[test]
fn a_full_tree_refuses_to_grow_without_changing() {
    let mut full = Frontier::from_parts(u64::MAX, vec![[7; 32]; 64]).unwrap();
    let before = full.clone();
    let mut out = Vec::new();
    assert_eq!(full.append([1; 32], &mut out), Err(TreeFull));
    assert_eq!(full, before);
    assert!(out.is_empty());

    let mut nearly = Frontier::from_parts(u64::MAX - 1, vec![[7; 32]; 63]).unwrap();
    assert_eq!(nearly.extend(&[[1; 32], [2; 32]], &mut out), Err(TreeFull));
    assert_eq!(nearly.size(), u64::MAX - 1);
    assert!(out.is_empty());
    nearly.append([1; 32], &mut out).unwrap();
    assert_eq!(nearly.size(), u64::MAX);
    // The last leaf completes no subtree: u64::MAX - 1 is even.
    assert_eq!(out.len(), 1);
}

#[test]
fn memory_tree_reports_missing_nodes() {
    let tree = tree(&leaves(5, 6));
    assert_eq!(tree.size(), 5);
    assert_eq!(tree.leaf_hash(4), Some(leaves(5, 6)[4]));
    assert_eq!(tree.leaf_hash(5), None);
    assert_eq!(tree.node(0, 5), Err(MissingNode(NodeId::new(0, 5))));
    // (2, 1) would cover leaves 4..8: not complete in a tree of 5.
    assert_eq!(tree.node(2, 1), Err(MissingNode(NodeId::new(2, 1))));
    assert_eq!(tree.node(40, 0), Err(MissingNode(NodeId::new(40, 0))));
}
