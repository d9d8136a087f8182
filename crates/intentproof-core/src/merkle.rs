//! RFC 6962 / RFC 9162 Merkle tree hashes, inclusion and consistency proofs.
//!
//! - empty tree: `SHA-256("")`
//! - leaf: `SHA-256(0x00 || data)`
//! - node: `SHA-256(0x01 || left || right)`
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two
//!   smaller than `n`; an odd node is never duplicated.
//!
//! [`event_merkle_root`] is the proof bundle's `event_merkle_root`: the
//! leaves are the event id strings (UTF-8), sorted byte-wise.
//!
//! ```
//! use intentproof_core::merkle::{leaf_hash, root, inclusion_proof, verify_inclusion};
//! let leaves: Vec<[u8; 32]> = [b"a", b"b", b"c"].iter().map(|d| leaf_hash(*d)).collect();
//! let r = root(&leaves);
//! let proof = inclusion_proof(&leaves, 2).unwrap();
//! verify_inclusion(&leaves[2], 2, 3, &proof, &r).unwrap();
//! assert!(verify_inclusion(&leaves[1], 2, 3, &proof, &r).is_err());
//! ```

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof does not verify or cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The index given.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old size is larger than the new size.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, but these tree sizes need {want}")]
    ProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes required.
        want: usize,
    },
    /// A consistency proof has too many or too few hashes for its sizes.
    #[error("consistency proof of {got} hashes does not fit tree sizes {old} -> {new}")]
    ConsistencyShape {
        /// Hashes in the proof.
        got: usize,
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The proof leads to a different root.
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch {
        /// Hex of the computed root.
        computed: String,
        /// Hex of the expected root.
        expected: String,
    },
}

/// `SHA-256("")`, the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The tree hash of `leaf_hashes` (already leaf-hashed).
///
/// Iterative: one pass over the leaves with a stack of at most 64 perfect
/// subtree roots, no allocation ([`RootAccumulator`]).
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut accumulator = RootAccumulator::default();
    for leaf in leaf_hashes {
        accumulator.push(*leaf);
    }
    accumulator.root()
}

/// The root of a log read as a stream, one leaf at a time, in 2 KiB: the
/// roots of the perfect subtrees the leaves so far make (at most 64, sizes
/// strictly decreasing). [`root`](Self::root) at any point is the RFC 6962
/// root of the leaves pushed so far, so a verifier streaming millions of
/// records checks every checkpoint on the way without keeping the leaves.
#[derive(Debug, Clone)]
pub struct RootAccumulator {
    stack: [Hash; 64],
    depth: usize,
    count: u64,
}

impl Default for RootAccumulator {
    fn default() -> Self {
        RootAccumulator {
            stack: [[0u8; 32]; 64],
            depth: 0,
            count: 0,
        }
    }
}

impl RootAccumulator {
    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.count += 1;
        let mut h = leaf;
        // Merge once per trailing zero bit of the new count.
        let mut c = self.count;
        while c & 1 == 0 {
            self.depth -= 1;
            h = node_hash(&self.stack[self.depth], &h);
            c >>= 1;
        }
        self.stack[self.depth] = h;
        self.depth += 1;
    }

    /// Leaves pushed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// No leaf pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        if self.depth == 0 {
            return empty_root();
        }
        // Fold the perfect subtrees from the right.
        let mut acc = self.stack[self.depth - 1];
        for i in (0..self.depth - 1).rev() {
            acc = node_hash(&self.stack[i], &acc);
        }
        acc
    }
}

/// The tree hash of raw leaf data.
pub fn root_of_data<D: AsRef<[u8]>>(leaves: &[D]) -> Hash {
    let hashes: Vec<Hash> = leaves.iter().map(|d| leaf_hash(d.as_ref())).collect();
    root(&hashes)
}

/// The bundle's `event_merkle_root` (also `attestation_merkle_root`): leaves
/// are the id strings' UTF-8 bytes sorted byte-wise; output
/// `"sha256:" + hex`.
///
/// ```
/// let a = intentproof_core::merkle::event_merkle_root(&["b", "a"]);
/// let b = intentproof_core::merkle::event_merkle_root(&["a", "b"]);
/// assert_eq!(a, b);
/// assert!(a.starts_with("sha256:"));
/// ```
pub fn event_merkle_root<S: AsRef<str>>(ids: &[S]) -> String {
    let mut sorted: Vec<&[u8]> = ids.iter().map(|s| s.as_ref().as_bytes()).collect();
    sorted.sort_unstable();
    let hashes: Vec<Hash> = sorted.iter().map(|d| leaf_hash(d)).collect();
    crate::v1::sha256_prefixed(&root(&hashes))
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n >= 2).
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The inclusion proof (audit path, RFC 6962 PATH) of leaf `index`.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: usize) -> Result<Vec<Hash>, MerkleError> {
    if index >= leaf_hashes.len() {
        return Err(MerkleError::IndexOutOfRange {
            index: index as u64,
            size: leaf_hashes.len() as u64,
        });
    }
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaf_hashes.len(), index);
    // Walk down, collecting siblings root-first, then reverse (leaf-first).
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            proof.push(root(&leaf_hashes[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(root(&leaf_hashes[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// An append-only Merkle tree that keeps the hash of every complete
/// (perfect, aligned) subtree, so the root of any prefix and any inclusion
/// or consistency proof cost O(log² n) hashes instead of the O(n) of
/// [`root`] and [`inclusion_proof`] over a plain leaf list. It costs about
/// one extra hash per leaf of memory. Results are identical to those
/// functions (tested against them).
///
/// ```
/// use intentproof_core::merkle::{MerkleLog, leaf_hash, root, inclusion_proof};
/// let leaves: Vec<[u8; 32]> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
/// let mut log = MerkleLog::default();
/// log.extend(leaves.iter().copied());
/// assert_eq!(log.root(5), root(&leaves));
/// assert_eq!(log.root(3), root(&leaves[..3]));
/// assert_eq!(log.inclusion_proof(1, 5).unwrap(), inclusion_proof(&leaves, 1).unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleLog {
    /// `levels[h][i]`: the root of the 2^h leaves starting at leaf `i << h`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleLog {
    /// A log holding `leaf_hashes`.
    pub fn from_leaves(leaf_hashes: impl IntoIterator<Item = Hash>) -> MerkleLog {
        let mut log = MerkleLog::default();
        log.extend(leaf_hashes);
        log
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// Whether the log has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one leaf hash (amortised O(1) node hashes).
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len().is_multiple_of(2) {
            let n = self.levels[h].len();
            let parent = node_hash(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// Appends leaf hashes in order.
    pub fn extend(&mut self, leaf_hashes: impl IntoIterator<Item = Hash>) {
        for leaf in leaf_hashes {
            self.push(leaf);
        }
    }

    /// The root of leaves `start..end`, aligned as [`range_root_of`] needs.
    fn range_root(&self, start: usize, end: usize) -> Hash {
        infallible(range_root_of(self, start, end))
    }

    /// The root of the first `size` leaves (`size` is capped at [`Self::len`]).
    pub fn root(&self, size: usize) -> Hash {
        self.range_root(0, size.min(self.len()))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves; the same as [`inclusion_proof`] over those leaves.
    pub fn inclusion_proof(&self, index: usize, size: usize) -> Result<Vec<Hash>, MerkleError> {
        match inclusion_proof_of(self, index, size.min(self.len())) {
            Ok(proof) => Ok(proof),
            Err(ProofError::Merkle(e)) => Err(e),
            Err(ProofError::Source(never)) => match never {},
        }
    }

    /// The consistency proof between the first `old_size` leaves and the
    /// first `size`; the same as [`consistency_proof`] over those leaves.
    pub fn consistency_proof(
        &self,
        old_size: usize,
        size: usize,
    ) -> Result<Vec<Hash>, MerkleError> {
        match consistency_proof_of(self, old_size, size.min(self.len())) {
            Ok(proof) => Ok(proof),
            Err(ProofError::Merkle(e)) => Err(e),
            Err(ProofError::Source(never)) => match never {},
        }
    }
}

fn infallible<T>(result: Result<T, std::convert::Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// Where a log's complete subtrees come from: the root of the `2^height`
/// leaves starting at leaf `index << height`.
trait Subtrees {
    type Error;
    fn subtree(&self, height: usize, index: usize) -> Result<Hash, Self::Error>;
}

impl Subtrees for MerkleLog {
    type Error = std::convert::Infallible;
    fn subtree(&self, height: usize, index: usize) -> Result<Hash, Self::Error> {
        Ok(self.levels[height][index])
    }
}

/// The root of leaves `start..end`, where `start` is a multiple of every
/// power of two up to `end - start` (true of every subtree in RFC 6962's
/// recursion): the right fold of its complete subtrees, largest first.
fn range_root_of<S: Subtrees>(log: &S, start: usize, end: usize) -> Result<Hash, S::Error> {
    if start == end {
        return Ok(empty_root());
    }
    let mut chunks: [Hash; 64] = [[0u8; 32]; 64];
    let mut count = 0;
    let (mut at, mut left) = (start, end - start);
    while left > 0 {
        let height = (usize::BITS - 1 - left.leading_zeros()) as usize;
        debug_assert_eq!(at % (1 << height), 0, "unaligned Merkle range");
        chunks[count] = log.subtree(height, at >> height)?;
        count += 1;
        at += 1 << height;
        left -= 1 << height;
    }
    let mut acc = chunks[count - 1];
    for chunk in chunks[..count - 1].iter().rev() {
        acc = node_hash(chunk, &acc);
    }
    Ok(acc)
}

/// Why a proof from a log whose subtrees are read could not be made.
#[derive(Debug)]
enum ProofError<E> {
    Merkle(MerkleError),
    Source(E),
}

/// The inclusion proof of leaf `index` in the tree of the first `size`
/// leaves of `log` (`size` at most its length).
fn inclusion_proof_of<S: Subtrees>(
    log: &S,
    index: usize,
    size: usize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::Merkle(MerkleError::IndexOutOfRange {
            index: index as u64,
            size: size as u64,
        }));
    }
    let mut proof = Vec::new();
    let (mut lo, mut hi) = (0usize, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            proof.push(range_root_of(log, lo + k, hi).map_err(ProofError::Source)?);
            hi = lo + k;
        } else {
            proof.push(range_root_of(log, lo, lo + k).map_err(ProofError::Source)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof between the first `old_size` leaves of `log` and
/// the first `size` (`size` at most its length): RFC 6962 PROOF / SUBPROOF.
fn consistency_proof_of<S: Subtrees>(
    log: &S,
    old_size: usize,
    size: usize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > size {
        return Err(ProofError::Merkle(MerkleError::SizeOrder {
            old: old_size as u64,
            new: size as u64,
        }));
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == size {
        return Ok(proof);
    }
    // SUBPROOF(m, D[lo:hi], complete), iteratively: each step adds one
    // sibling subtree; the last adds the old tree's own subtree unless it
    // is the whole left side (complete).
    let (mut m, mut lo, mut hi, mut complete) = (old_size, 0usize, size, true);
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            proof.push(range_root_of(log, lo + k, hi).map_err(ProofError::Source)?);
            hi = lo + k;
        } else {
            proof.push(range_root_of(log, lo, lo + k).map_err(ProofError::Source)?);
            m -= k;
            lo += k;
            complete = false;
        }
    }
    if !complete {
        proof.push(range_root_of(log, lo, hi).map_err(ProofError::Source)?);
    }
    proof.reverse();
    Ok(proof)
}

/// An append-only Merkle log like [`MerkleLog`] that keeps in memory only
/// the subtrees of `2^floor` leaves and up, and the leaves of the last,
/// incomplete block of `2^floor`: about `64 / 2^floor` bytes per leaf
/// instead of 64. A root or a proof that needs a smaller subtree of a
/// complete block rehashes that block's leaves, which the caller reads
/// (from wherever it keeps them) through `read(first, out)`: fill `out`
/// with the leaves from `first` on. The leaves read must hash to the
/// block's root kept in memory ([`BlockLogError::Mismatch`] otherwise), so
/// a damaged copy can never change a root or a proof. A root of the whole
/// log never reads (its small subtrees are all in the last block); an
/// inclusion proof reads the leaf's block (and, for a tree size short of
/// the log's, the block that size ends in). Results are those of
/// [`MerkleLog`] (tested against it).
///
/// ```
/// use intentproof_core::merkle::{BlockLog, MerkleLog, leaf_hash};
/// let leaves: Vec<[u8; 32]> = (0u8..11).map(|i| leaf_hash(&[i])).collect();
/// let mut log = BlockLog::new(2); // blocks of 4 leaves
/// log.extend(leaves.iter().copied());
/// let read = |first: usize, out: &mut [[u8; 32]]| -> Result<(), ()> {
///     out.copy_from_slice(&leaves[first..first + out.len()]);
///     Ok(())
/// };
/// let full = MerkleLog::from_leaves(leaves.iter().copied());
/// assert_eq!(log.root(11, &read).unwrap(), full.root(11));
/// assert_eq!(log.root(6, &read).unwrap(), full.root(6));
/// assert_eq!(log.inclusion_proof(1, 11, &read).unwrap(), full.inclusion_proof(1, 11).unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockLog {
    floor: u32,
    /// The roots of the complete blocks, and every subtree above them.
    blocks: MerkleLog,
    /// The leaves of the incomplete block, and its subtrees.
    tail: MerkleLog,
}

/// How a [`BlockLog`] reads leaves back: `read(first, out)` fills `out`
/// with the leaves from `first` on.
pub type ReadLeaves<'a, E> = &'a dyn Fn(usize, &mut [Hash]) -> Result<(), E>;

/// Why [`BlockLog::inclusion_proof`] gave no proof.
#[derive(Debug, thiserror::Error)]
pub enum BlockLogError<E> {
    /// The leaf or the size is out of range.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The caller's `read` failed.
    #[error("reading Merkle leaves: {0}")]
    Read(E),
    /// The leaves read for the block starting at leaf `first` do not hash
    /// to its root: the copy they came from is damaged.
    #[error("the Merkle leaves read from {first} on do not hash to their block's root")]
    Mismatch {
        /// The block's first leaf.
        first: usize,
    },
}

/// A [`BlockLog`] with the caller's way to read leaves, and the blocks
/// read so far (a proof needs at most two, several times each).
struct Reading<'a, E> {
    log: &'a BlockLog,
    read: ReadLeaves<'a, E>,
    blocks: std::cell::RefCell<Vec<(usize, MerkleLog)>>,
}

impl<'a, E> Reading<'a, E> {
    fn new(log: &'a BlockLog, read: ReadLeaves<'a, E>) -> Self {
        Reading {
            log,
            read,
            blocks: std::cell::RefCell::new(Vec::new()),
        }
    }
}

impl<E> Subtrees for Reading<'_, E> {
    type Error = BlockLogError<E>;
    fn subtree(&self, height: usize, index: usize) -> Result<Hash, Self::Error> {
        let floor = self.log.floor as usize;
        if height >= floor {
            return Ok(infallible(self.log.blocks.subtree(height - floor, index)));
        }
        let block = (index << height) >> floor;
        let in_block = index - (block << (floor - height));
        if block == self.log.blocks.len() {
            return Ok(infallible(self.log.tail.subtree(height, in_block)));
        }
        let mut read = self.blocks.borrow_mut();
        if let Some((_, leaves)) = read.iter().find(|(b, _)| *b == block) {
            return Ok(infallible(leaves.subtree(height, in_block)));
        }
        let first = block << floor;
        let mut leaves = vec![[0u8; 32]; 1 << floor];
        (self.read)(first, &mut leaves).map_err(BlockLogError::Read)?;
        let leaves = MerkleLog::from_leaves(leaves);
        if leaves.root(1 << floor) != infallible(self.log.blocks.subtree(0, block)) {
            return Err(BlockLogError::Mismatch { first });
        }
        let hash = infallible(leaves.subtree(height, in_block));
        read.push((block, leaves));
        Ok(hash)
    }
}

impl BlockLog {
    /// An empty log keeping subtrees of `2^floor` leaves and up (`floor`
    /// 0 keeps every leaf, as [`MerkleLog`]; at most 32).
    pub fn new(floor: u32) -> BlockLog {
        BlockLog {
            floor: floor.min(32),
            ..BlockLog::default()
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        (self.blocks.len() << self.floor) + self.tail.len()
    }

    /// Whether the log has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.tail.push(leaf);
        let block = 1usize << self.floor;
        if self.tail.len() == block {
            self.blocks.push(self.tail.root(block));
            self.tail = MerkleLog::default();
        }
    }

    /// Appends leaf hashes in order.
    pub fn extend(&mut self, leaf_hashes: impl IntoIterator<Item = Hash>) {
        for leaf in leaf_hashes {
            self.push(leaf);
        }
    }

    /// The root of the first `size` leaves (`size` is capped at
    /// [`Self::len`]); reads a block only for a `size` inside one.
    pub fn root<E>(&self, size: usize, read: ReadLeaves<'_, E>) -> Result<Hash, BlockLogError<E>> {
        range_root_of(&Reading::new(self, read), 0, size.min(self.len()))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves (`size` is capped at [`Self::len`]).
    pub fn inclusion_proof<E>(
        &self,
        index: usize,
        size: usize,
        read: ReadLeaves<'_, E>,
    ) -> Result<Vec<Hash>, BlockLogError<E>> {
        inclusion_proof_of(&Reading::new(self, read), index, size.min(self.len())).map_err(|e| {
            match e {
                ProofError::Merkle(e) => BlockLogError::Merkle(e),
                ProofError::Source(e) => e,
            }
        })
    }

    /// The consistency proof between the first `old_size` leaves and the
    /// first `size` (`size` is capped at [`Self::len`]).
    pub fn consistency_proof<E>(
        &self,
        old_size: usize,
        size: usize,
        read: ReadLeaves<'_, E>,
    ) -> Result<Vec<Hash>, BlockLogError<E>> {
        consistency_proof_of(&Reading::new(self, read), old_size, size.min(self.len())).map_err(
            |e| match e {
                ProofError::Merkle(e) => BlockLogError::Merkle(e),
                ProofError::Source(e) => e,
            },
        )
    }
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(MerkleError::ProofLength {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(MerkleError::ProofLength {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    check_root(&r, expected_root)
}

fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut f_n, mut s_n, mut n) = (index, size - 1, 0);
    while s_n != 0 {
        if f_n & 1 == 0 && f_n == s_n {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
        n += 1;
    }
    n
}

fn check_root(computed: &Hash, expected: &Hash) -> Result<(), MerkleError> {
    if computed == expected {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch {
            computed: hex(computed),
            expected: hex(expected),
        })
    }
}

/// Lowercase hex of a hash.
pub fn hex(h: &Hash) -> String {
    let mut s = String::with_capacity(64);
    crate::v1::push_hex(&mut s, h);
    s
}

/// The consistency proof between the first `old_size` leaves and all of
/// `leaf_hashes` (RFC 6962 PROOF / SUBPROOF). Empty when `old_size` is 0 or
/// equals the tree size.
pub fn consistency_proof(leaf_hashes: &[Hash], old_size: usize) -> Result<Vec<Hash>, MerkleError> {
    if old_size > leaf_hashes.len() {
        return Err(MerkleError::SizeOrder {
            old: old_size as u64,
            new: leaf_hashes.len() as u64,
        });
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < leaf_hashes.len() {
        subproof(old_size, leaf_hashes, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if old_size == 0 {
            Ok(())
        } else {
            check_root(new_root, old_root)
        };
    }
    // If old_size is a power of two, the old root is the first proof node.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let shape = MerkleError::ConsistencyShape {
        got: proof.len(),
        old: old_size,
        new: new_size,
    };
    let (first, rest) = match path.split_first() {
        Some(split) if !proof.is_empty() => split,
        _ => return Err(shape),
    };
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return Err(shape);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(shape);
    }
    check_root(&fr, old_root)?;
    check_root(&sr, new_root)
}
