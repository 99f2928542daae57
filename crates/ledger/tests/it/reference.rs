//! Straight transcriptions of the recursive definitions in RFC 9162 section 2.1 and of the
//! subtree proofs of the Merkle Tree Certificates draft, over a slice of leaf hashes.
//!
//! They are slow (every subtree hash is recomputed from its leaves) and obviously right, which
//! is what the fast, stored-node implementation is compared against.

use ledger::merkle::{EMPTY_ROOT, Hash, node_hash};

/// The largest power of two smaller than `n`, for `n > 1`.
fn split(n: usize) -> usize {
    assert!(n > 1);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]).
pub(crate) fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]): the inclusion proof of leaf `m`.
pub(crate) fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true): the consistency proof from size `m`.
pub(crate) fn proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// SUBTREE_PROOF(start, end, D[n]) of the Merkle Tree Certificates draft, for a non-empty valid
/// subtree.
pub(crate) fn subtree_proof(start: usize, end: usize, leaves: &[Hash]) -> Vec<Hash> {
    subtree_subproof(start, end, leaves, true)
}

fn subtree_subproof(start: usize, end: usize, leaves: &[Hash], known: bool) -> Vec<Hash> {
    let n = leaves.len();
    if start == 0 && end == n {
        return if known { vec![] } else { vec![mth(leaves)] };
    }
    let k = split(n);
    let (mut p, sibling) = if end <= k {
        (subtree_subproof(start, end, &leaves[..k], known), mth(&leaves[k..]))
    } else if k <= start {
        (subtree_subproof(start - k, end - k, &leaves[k..], known), mth(&leaves[..k]))
    } else {
        // Only a subtree starting at 0 straddles the split.
        (subtree_subproof(0, end - k, &leaves[k..], false), mth(&leaves[..k]))
    };
    p.push(sibling);
    p
}

/// Whether `[start, end)` is a non-empty subtree: `start` is a multiple of the smallest power of
/// two at least `end - start`.
pub(crate) fn is_subtree(start: usize, end: usize) -> bool {
    start < end && start.is_multiple_of((end - start).next_power_of_two())
}
