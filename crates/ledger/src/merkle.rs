//! The RFC 6962 / RFC 9162 Merkle tree over SHA-256: hashing, appending, proofs and their
//! verification.
//!
//! The store keeps a *stored-hash index*: the hash of every perfect subtree of the log, addressed
//! by [`NodeId`] `(level, index)`, the subtree of `2^level` leaves that starts at leaf
//! `index * 2^level`. A perfect subtree never changes once its last leaf is appended, so the
//! index only grows. Everything here is built on that index:
//!
//! - [`Frontier`] appends leaves: from the perfect subtrees on the right edge of the tree it
//!   computes the new nodes to store, in amortised O(1) hashes per leaf.
//! - [`root`], [`inclusion_proof`] and [`consistency_proof`] read O(log n) stored nodes through a
//!   [`NodeReader`] and never rebuild anything. An RFC proof hash that covers a non-perfect range
//!   at the right edge of the tree is folded from the perfect subtrees that make it up.
//! - [`nodes_for_root`], [`nodes_for_inclusion`] and [`nodes_for_consistency`] list the nodes those
//!   functions will read, so that a SQL store can fetch them in one query into a map, which is
//!   itself a [`NodeReader`].
//! - [`verify_inclusion`] and [`verify_consistency`] follow RFC 9162 sections 2.1.3.2 and
//!   2.1.4.2. [`verify_subtree_inclusion`] and [`verify_subtree_consistency`] verify the subtree
//!   proofs of the Merkle Tree Certificates draft, which generalise them.
//!
//! This module must never do I/O: storage is behind [`NodeReader`], and hashes of leaves are
//! computed by the caller from the canonical leaf encoding.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree, `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new().chain_update([0x00]).chain_update(data).finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([0x01]).chain_update(left).chain_update(right).finalize().into()
}

/// The address of a perfect subtree: `2^level` leaves starting at leaf `index * 2^level`.
///
/// Leaves are level 0. Ordered by level, then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height of the subtree: it covers `2^level` leaves. At most 63.
    pub level: u8,
    /// Position of the subtree among those of the same level, counted from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.level, self.index)
    }
}

/// A perfect subtree hash to store, as produced by [`Frontier::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredNode {
    /// Where the hash belongs in the stored-hash index.
    pub id: NodeId,
    /// The subtree hash.
    pub hash: Hash,
}

/// Read access to the stored-hash index.
///
/// Only perfect subtrees that are complete in the tree being proven are ever asked for.
pub trait NodeReader {
    /// Why a node could not be read.
    type Error;

    /// The hash of the perfect subtree `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<R: NodeReader + ?Sized> NodeReader for &R {
    type Error = R::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// A node asked of an in-memory reader was not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored node {0} is missing")]
pub struct MissingNode(pub NodeId);

/// Nodes fetched in one batch, typically the result of a query for [`nodes_for_inclusion`].
impl NodeReader for HashMap<NodeId, Hash> {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let id = NodeId { level, index };
        self.get(&id).copied().ok_or(MissingNode(id))
    }
}

/// Nodes fetched in one batch, typically the result of a query for [`nodes_for_inclusion`].
impl NodeReader for BTreeMap<NodeId, Hash> {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let id = NodeId { level, index };
        self.get(&id).copied().ok_or(MissingNode(id))
    }
}

/// Why a proof cannot be produced for the sizes and index asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The leaf is not in the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// A tree cannot be proven consistent with a larger one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// The size asked to be proven a prefix.
        old_size: u64,
        /// The size of the tree it should be a prefix of.
        new_size: u64,
    },
    /// RFC 9162 defines no consistency proof from the empty tree; it proves nothing.
    #[error("there is no consistency proof from the empty tree")]
    EmptyOldTree,
}

/// Why a root, frontier or proof could not be computed from stored nodes.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// The request itself is invalid; no node was read.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The reader failed.
    #[error("reading a stored tree node failed")]
    Read(#[source] E),
}

/// Appending to a tree of `u64::MAX` leaves: the size would not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tree is full: its size cannot grow past u64::MAX")]
pub struct TreeFull;

/// The nodes a computation reads, and how they group into hashes.
///
/// Each group is a run of perfect subtrees, largest first, that together cover one RFC range;
/// its hash is their right fold. Most groups are a single node; at most one per proof is not
/// (the range at the right edge of the tree).
#[derive(Default)]
struct Shape {
    nodes: Vec<NodeId>,
    groups: Vec<usize>,
}

impl Shape {
    fn push_node(&mut self, level: u8, index: u64) {
        self.nodes.push(NodeId { level, index });
        self.groups.push(1);
    }

    /// Adds the range `[start, end)` as one group. `start` must be a multiple of a power of two
    /// that is at least `end - start`, which makes the decomposition the binary digits of the
    /// length, largest first, exactly the split RFC 6962 uses for such a range.
    fn push_range(&mut self, start: u64, end: u64) {
        let before = self.nodes.len();
        let mut pos = start;
        let mut rem = end - start;
        while rem > 0 {
            let level = 63 - rem.leading_zeros();
            self.nodes.push(NodeId { level: level as u8, index: pos >> level });
            pos += 1 << level;
            rem -= 1 << level;
        }
        self.groups.push(self.nodes.len() - before);
    }

    /// Adds the RFC 9162 inclusion path of the perfect node `(level, index)` in a tree of `size`
    /// leaves, bottom-up. The node must be complete in that tree.
    fn push_path(&mut self, level: u8, index: u64, size: u64) {
        // Below `inner` the node's ancestors differ from those of the tree's last leaf, so every
        // sibling there is perfect, except the topmost one, which is the right subtree holding
        // the last leaf and may be cut short by the tree's right edge.
        let last = (size - 1) >> level;
        let inner = 64 - (index ^ last).leading_zeros();
        for l in 0..inner {
            let sibling_level = level + l as u8;
            let sibling = (index >> l) ^ 1;
            if l + 1 == inner {
                self.push_range(sibling << sibling_level, size);
            } else {
                self.push_node(sibling_level, sibling);
            }
        }
        // Above `inner` the path runs along the right edge; the RFC tree has a left sibling
        // exactly where the node index has a one bit.
        let mut l = inner;
        while l < 64 && index >> l != 0 {
            if (index >> l) & 1 == 1 {
                self.push_node(level + l as u8, (index >> l) - 1);
            }
            l += 1;
        }
    }

    fn for_root(size: u64) -> Shape {
        let mut shape = Shape::default();
        if size > 0 {
            shape.push_range(0, size);
        }
        shape
    }

    fn for_inclusion(index: u64, size: u64) -> Result<Shape, RangeError> {
        if index >= size {
            return Err(RangeError::IndexOutOfRange { index, size });
        }
        let mut shape = Shape::default();
        shape.push_path(0, index, size);
        Ok(shape)
    }

    fn for_consistency(old_size: u64, new_size: u64) -> Result<Shape, RangeError> {
        if old_size > new_size {
            return Err(RangeError::SizeOrder { old_size, new_size });
        }
        if old_size == 0 {
            return Err(RangeError::EmptyOldTree);
        }
        let mut shape = Shape::default();
        if old_size == new_size {
            return Ok(shape);
        }
        // The smallest perfect subtree of the old tree ends at its last leaf. The proof is that
        // node's inclusion path in the new tree, preceded by the node itself unless it is the
        // whole old tree, whose root the verifier already has (RFC 9162 SUBPROOF).
        let level = old_size.trailing_zeros() as u8;
        let index = (old_size >> level) - 1;
        if index != 0 {
            shape.push_node(level, index);
        }
        shape.push_path(level, index, new_size);
        Ok(shape)
    }

    fn read<R: NodeReader + ?Sized>(&self, reader: &R) -> Result<Vec<Hash>, R::Error> {
        let mut hashes = Vec::with_capacity(self.groups.len());
        let mut nodes = self.nodes.iter();
        for &len in &self.groups {
            let group: Vec<Hash> =
                nodes.by_ref().take(len).map(|id| reader.node(id.level, id.index)).collect::<Result<_, _>>()?;
            hashes.push(fold_right(&group));
        }
        Ok(hashes)
    }
}

/// `H(a, H(b, ... H(y, z)))`: the hash of a range from its perfect subtrees, largest first.
fn fold_right(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    let Some(last) = iter.next() else { return EMPTY_ROOT };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// The nodes [`root`] reads for a tree of `size` leaves: its frontier, largest first.
pub fn nodes_for_root(size: u64) -> Vec<NodeId> {
    Shape::for_root(size).nodes
}

/// The nodes [`inclusion_proof`] reads: at most about `2 * log2(size)` of them.
pub fn nodes_for_inclusion(index: u64, size: u64) -> Result<Vec<NodeId>, RangeError> {
    Ok(Shape::for_inclusion(index, size)?.nodes)
}

/// The nodes [`consistency_proof`] reads: at most about `2 * log2(new_size)` of them.
pub fn nodes_for_consistency(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, RangeError> {
    Ok(Shape::for_consistency(old_size, new_size)?.nodes)
}

/// The root of the tree of the first `size` leaves.
pub fn root<R: NodeReader + ?Sized>(size: u64, reader: &R) -> Result<Hash, R::Error> {
    let hashes = Shape::for_root(size).read(reader)?;
    Ok(hashes.first().copied().unwrap_or(EMPTY_ROOT))
}

/// The RFC 9162 inclusion proof (`PATH`) of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<R: NodeReader + ?Sized>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    Shape::for_inclusion(index, size)?.read(reader).map_err(TreeError::Read)
}

/// The RFC 9162 consistency proof (`PROOF`) that the tree of `old_size` leaves is a prefix of
/// the tree of `new_size` leaves. Empty when the sizes are equal.
pub fn consistency_proof<R: NodeReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    Shape::for_consistency(old_size, new_size)?.read(reader).map_err(TreeError::Read)
}

/// The right edge of a tree: the hashes of the perfect subtrees that its size decomposes into,
/// largest (leftmost) first, one per one bit of the size.
///
/// It is all an appender needs: the root is their right fold, and a new leaf only ever merges
/// with the smallest ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

/// A frontier was given the wrong number of hashes for its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of size {size} has {expected} hashes, not {actual}")]
pub struct FrontierError {
    /// The tree size.
    pub size: u64,
    /// One per one bit of the size.
    pub expected: usize,
    /// How many were given.
    pub actual: usize,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// A frontier from hashes already read, in the order of [`nodes_for_root`]`(size)`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError { size, expected, actual: hashes.len() });
        }
        Ok(Frontier { size, hashes })
    }

    /// Reads the frontier of the tree of `size` leaves from the stored-hash index.
    pub fn read<R: NodeReader + ?Sized>(size: u64, reader: &R) -> Result<Self, R::Error> {
        let hashes = nodes_for_root(size).iter().map(|id| reader.node(id.level, id.index)).collect::<Result<_, _>>()?;
        Ok(Frontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, largest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The frontier as stored nodes, largest subtree first.
    pub fn nodes(&self) -> impl Iterator<Item = StoredNode> + '_ {
        nodes_for_root(self.size).into_iter().zip(&self.hashes).map(|(id, &hash)| StoredNode { id, hash })
    }

    /// The tree root.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes)
    }

    /// Appends one leaf and pushes the new perfect subtrees to store onto `out`: the leaf itself
    /// at level 0, then one node per level at which it completes a subtree.
    pub fn append(&mut self, leaf_hash: Hash, out: &mut Vec<StoredNode>) -> Result<(), TreeFull> {
        let index = self.size;
        self.size = index.checked_add(1).ok_or(TreeFull)?;
        out.push(StoredNode { id: NodeId { level: 0, index }, hash: leaf_hash });
        // Each trailing one bit of the old size is a frontier subtree the new leaf completes.
        let mut hash = leaf_hash;
        for level in 1..=index.trailing_ones() {
            // The frontier holds one hash per one bit, so a trailing one always has a hash.
            let Some(left) = self.hashes.pop() else { break };
            hash = node_hash(&left, &hash);
            out.push(StoredNode { id: NodeId { level: level as u8, index: index >> level }, hash });
        }
        self.hashes.push(hash);
        Ok(())
    }

    /// Appends many leaves; see [`Frontier::append`]. Fails without appending anything if the
    /// size would overflow.
    pub fn extend(&mut self, leaf_hashes: &[Hash], out: &mut Vec<StoredNode>) -> Result<(), TreeFull> {
        let count = u64::try_from(leaf_hashes.len()).map_err(|_| TreeFull)?;
        self.size.checked_add(count).ok_or(TreeFull)?;
        // A run of leaves stores just under two nodes per leaf.
        out.reserve(2 * leaf_hashes.len() + 64);
        for &leaf in leaf_hashes {
            self.append(leaf, out)?;
        }
        Ok(())
    }
}

/// The whole stored-hash index in memory, one vector per level.
///
/// Used by tests, and by offline verification, which rebuilds the tree from the exported leaves
/// and then asks it the same questions it would ask the server's store.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
    scratch: Vec<StoredNode>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// A tree of the given leaf hashes.
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Result<Self, TreeFull> {
        let mut tree = MemoryTree::new();
        for leaf in leaf_hashes {
            tree.push(leaf)?;
        }
        Ok(tree)
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf_hash: Hash) -> Result<(), TreeFull> {
        self.scratch.clear();
        self.frontier.append(leaf_hash, &mut self.scratch)?;
        for node in &self.scratch {
            let level = usize::from(node.id.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            self.levels[level].push(node.hash);
        }
        Ok(())
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The current frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// The hash of leaf `index`, if there is one.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }
}

impl NodeReader for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let missing = MissingNode(NodeId { level, index });
        let index = usize::try_from(index).map_err(|_| missing)?;
        self.levels.get(usize::from(level)).and_then(|l| l.get(index)).copied().ok_or(missing)
    }
}

/// Why a proof was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size, so no proof can show it in the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old tree is claimed to be larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// The claimed old size.
        old_size: u64,
        /// The claimed new size.
        new_size: u64,
    },
    /// Consistency with the empty tree is trivially true, so a "proof" of it proves nothing
    /// and is refused rather than reported as a success.
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyOldTree,
    /// The proof has the wrong number of hashes for the sizes and index claimed.
    #[error("proof has {actual} hashes where {expected} are needed")]
    WrongProofLength {
        /// How many the sizes and index call for.
        expected: usize,
        /// How many were given.
        actual: usize,
    },
    /// The inclusion proof does not lead from the leaf to the root.
    #[error("inclusion proof does not lead to the root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root: the proof or the old root is wrong.
    #[error("consistency proof does not lead to the old root")]
    OldRootMismatch,
    /// The consistency proof leads to the old root but not to the new one.
    #[error("consistency proof does not lead to the new root")]
    NewRootMismatch,
    /// Two different roots for the same tree size: evidence of a forked log, or a wrong root.
    #[error("two different roots for tree size {size}")]
    RootsDiffer {
        /// The common size.
        size: u64,
    },
    /// `[start, end)` is not a subtree in the sense of the Merkle Tree Certificates draft.
    #[error("[{start}, {end}) is not a valid subtree")]
    InvalidSubtree {
        /// The claimed first leaf.
        start: u64,
        /// The claimed end (exclusive).
        end: u64,
    },
    /// The subtree reaches past the end of the tree.
    #[error("subtree end {end} is beyond tree size {size}")]
    SubtreeBeyondTree {
        /// The claimed subtree end.
        end: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The leaf is not inside the subtree.
    #[error("leaf index {index} is outside the subtree [{start}, {end})")]
    IndexOutsideSubtree {
        /// The claimed leaf index.
        index: u64,
        /// The subtree's first leaf.
        start: u64,
        /// The subtree's end (exclusive).
        end: u64,
    },
    /// The subtree proof does not lead to the subtree hash.
    #[error("subtree proof does not lead to the subtree hash")]
    SubtreeHashMismatch,
}

/// Which side of the running hash a proof hash goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// `H(proof hash, running)`; in a consistency proof the hash is also part of the old tree.
    Left,
    /// `H(running, proof hash)`.
    Right,
}

/// The index walk of RFC 9162 sections 2.1.3.2 and 2.1.4.2, without the hashing: it yields, for
/// each proof hash in turn, the side it goes on, and ends when the proof must end. Running it
/// first gives the exact proof length, so a wrong length is reported as such.
#[derive(Clone)]
struct RfcWalk {
    fn_: u64,
    sn: u64,
}

impl Iterator for RfcWalk {
    type Item = Side;

    fn next(&mut self) -> Option<Side> {
        if self.sn == 0 {
            return None;
        }
        let side = if self.fn_ & 1 == 1 || self.fn_ == self.sn {
            // On the right edge, levels where the RFC tree has no sibling are skipped.
            while self.fn_ & 1 == 0 && self.fn_ != 0 {
                self.fn_ >>= 1;
                self.sn >>= 1;
            }
            Side::Left
        } else {
            Side::Right
        };
        self.fn_ >>= 1;
        self.sn >>= 1;
        Some(side)
    }
}

fn check_len(expected: usize, proof: &[Hash]) -> Result<(), ProofError> {
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength { expected, actual: proof.len() });
    }
    Ok(())
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let walk = RfcWalk { fn_: index, sn: size - 1 };
    check_len(walk.clone().count(), proof)?;
    let computed = walk.zip(proof).fold(*leaf_hash, |r, (side, p)| match side {
        Side::Left => node_hash(p, &r),
        Side::Right => node_hash(&r, p),
    });
    if computed != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 is refused: RFC 9162 has no
/// proof for it, and accepting any input for it would hide a caller's mistake.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if old_size == new_size {
        check_len(0, proof)?;
        if old_root != new_root {
            return Err(ProofError::RootsDiffer { size: old_size });
        }
        return Ok(());
    }
    // When the old size is a power of two the old root is itself the first node of the path,
    // so the RFC prepends it instead of sending it.
    let seeded_by_old_root = old_size.is_power_of_two();
    let mut walk = RfcWalk { fn_: old_size - 1, sn: new_size - 1 };
    while walk.fn_ & 1 == 1 {
        walk.fn_ >>= 1;
        walk.sn >>= 1;
    }
    check_len(usize::from(!seeded_by_old_root) + walk.clone().count(), proof)?;
    let (seed, path) = match (seeded_by_old_root, proof.split_first()) {
        (true, _) => (old_root, proof),
        (false, Some((first, rest))) => (first, rest),
        // check_len has required at least one hash.
        (false, None) => return Err(ProofError::WrongProofLength { expected: 1, actual: 0 }),
    };
    let (mut fr, mut sr) = (*seed, *seed);
    for (side, c) in walk.zip(path) {
        match side {
            Side::Left => {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
            }
            Side::Right => sr = node_hash(&sr, c),
        }
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// Whether `[start, end)` is a subtree in the sense of the Merkle Tree Certificates draft
/// (draft-ietf-plants-merkle-tree-certs): `start` is a multiple of the smallest power of two
/// that is at least `end - start`. The empty range `start == end` is a subtree too.
fn is_valid_subtree(start: u64, end: u64) -> bool {
    match end.checked_sub(start) {
        None => false,
        Some(0) => true,
        // A length above 2^63 rounds up to 2^64, of which only 0 is a multiple.
        Some(len) => len.checked_next_power_of_two().map_or(start == 0, |p| start.is_multiple_of(p)),
    }
}

/// Verifies a subtree inclusion proof of the Merkle Tree Certificates draft: that `leaf_hash`
/// is leaf `index` of the subtree `[start, end)` whose hash is `subtree_hash`.
///
/// A valid subtree has the shape of a whole tree of `end - start` leaves, so this is an RFC 9162
/// inclusion proof of leaf `index - start` in it.
pub fn verify_subtree_inclusion(
    index: u64,
    start: u64,
    end: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    subtree_hash: &Hash,
) -> Result<(), ProofError> {
    if !is_valid_subtree(start, end) {
        return Err(ProofError::InvalidSubtree { start, end });
    }
    if index < start || index >= end {
        return Err(ProofError::IndexOutsideSubtree { index, start, end });
    }
    verify_inclusion(index - start, end - start, leaf_hash, proof, subtree_hash).map_err(|e| match e {
        ProofError::RootMismatch => ProofError::SubtreeHashMismatch,
        other => other,
    })
}

/// The index walk of the subtree consistency verification of the Merkle Tree Certificates
/// draft, without the hashing; like [`RfcWalk`], run first to learn the proof length.
#[derive(Clone)]
struct SubtreeWalk {
    fn_: u64,
    sn: u64,
    tn: u64,
}

impl SubtreeWalk {
    fn shift(&mut self) {
        self.fn_ >>= 1;
        self.sn >>= 1;
        self.tn >>= 1;
    }
}

impl Iterator for SubtreeWalk {
    /// The side, and whether a left hash also belongs to the subtree.
    type Item = (Side, bool);

    fn next(&mut self) -> Option<(Side, bool)> {
        if self.tn == 0 {
            return None;
        }
        let item = if self.sn & 1 == 1 || self.sn == self.tn {
            let inside = self.fn_ < self.sn;
            // On the right edge, levels where the tree has no sibling are skipped; `sn` is not
            // zero here because `tn` is not, so this ends.
            while self.sn & 1 == 0 {
                self.shift();
            }
            (Side::Left, inside)
        } else {
            (Side::Right, false)
        };
        self.shift();
        Some(item)
    }
}

/// Verifies a subtree consistency proof of the Merkle Tree Certificates draft: that the subtree
/// `[start, end)` with hash `subtree_hash` is part of the tree of `size` leaves with root `root`.
///
/// With `start == 0` this is a consistency proof from `end` to `size`. An empty subtree is part
/// of every tree: it needs an empty proof and the empty hash, and the root is not looked at.
pub fn verify_subtree_consistency(
    start: u64,
    end: u64,
    size: u64,
    subtree_hash: &Hash,
    root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if !is_valid_subtree(start, end) {
        return Err(ProofError::InvalidSubtree { start, end });
    }
    if end > size {
        return Err(ProofError::SubtreeBeyondTree { end, size });
    }
    if start == end {
        check_len(0, proof)?;
        if *subtree_hash != EMPTY_ROOT {
            return Err(ProofError::SubtreeHashMismatch);
        }
        return Ok(());
    }
    let mut walk = SubtreeWalk { fn_: start, sn: end - 1, tn: size - 1 };
    // Climb to the first level that needs a proof hash: to the subtree's own node if it sits on
    // the tree's right edge, otherwise while its last leaf's ancestor is a right child.
    if walk.sn == walk.tn {
        while walk.fn_ != walk.sn {
            walk.shift();
        }
    } else {
        while walk.fn_ != walk.sn && walk.sn & 1 == 1 {
            walk.shift();
        }
    }
    // When the climb reached a single node, that node is the subtree and the verifier has its
    // hash; otherwise the proof starts with the hash of the subtree's rightmost part.
    let seeded_by_subtree = walk.fn_ == walk.sn;
    check_len(usize::from(!seeded_by_subtree) + walk.clone().count(), proof)?;
    let (seed, path) = match (seeded_by_subtree, proof.split_first()) {
        (true, _) => (subtree_hash, proof),
        (false, Some((first, rest))) => (first, rest),
        (false, None) => return Err(ProofError::WrongProofLength { expected: 1, actual: 0 }),
    };
    let (mut fr, mut sr) = (*seed, *seed);
    for ((side, inside), c) in walk.zip(path) {
        match side {
            Side::Left => {
                if inside {
                    fr = node_hash(c, &fr);
                }
                sr = node_hash(c, &sr);
            }
            Side::Right => sr = node_hash(&sr, c),
        }
    }
    if fr != *subtree_hash {
        return Err(ProofError::SubtreeHashMismatch);
    }
    if sr != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
