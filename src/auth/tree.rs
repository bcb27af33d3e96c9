//! The batch hash tree: the BLAKE3 tree itself, one block per 1 KiB chunk.
//!
//! A batch of n blocks is hashed as the n-chunk input made of the blocks'
//! chunk images in leaf order, so its root is exactly `blake3::hash` of that
//! input ([0042]: leaves are block hashes, parents hash two children, up to
//! one root). A lone block checks against its chunk chaining value and the
//! sibling chaining values on its path (`blake3::hazmat`), while a complete
//! batch hashes as one contiguous input at multi-chunk SIMD speed. The tree
//! has BLAKE3's shape: a node over `len` leaves puts the largest power of two
//! below `len` on its left. Nodes are numbered in order: leaf i is `2i`, the
//! parent whose right subtree starts at leaf m is `2m - 1`.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

/// Bytes in one leaf: one BLAKE3 chunk.
pub const CHUNK_LEN: usize = 1024;

/// A BLAKE3 chaining value: the hash of a non-root node.
pub type Cv = [u8; 32];

/// Deepest path this module computes (a leaf count is a u16).
pub const MAX_PATH: usize = 16;

/// In-order number of a tree node (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub u16);

impl NodeId {
    /// The node covering `len >= 1` leaves from `start`.
    pub fn of_range(start: u16, len: u16) -> Self {
        if len <= 1 {
            NodeId(2 * start)
        } else {
            NodeId(2 * (start + left_len(len)) - 1)
        }
    }
}

/// Leaves in the left subtree of a node over `len >= 2` leaves: the largest
/// power of two strictly below `len`.
pub fn left_len(len: u16) -> u16 {
    debug_assert!(len >= 2);
    1 << (15 - (len - 1).leading_zeros())
}

/// The longest leaf-to-root path in a tree of `count` leaves:
/// ceil(log2(count)). Sizes payloads so any block fits a datagram.
pub fn max_depth(count: u16) -> usize {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros() as usize
}

/// One level of a leaf's path to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The node whose chaining value the proof supplies.
    pub sibling: NodeId,
    /// True when the sibling is the left child.
    pub sibling_is_left: bool,
    /// The parent of the node and its sibling.
    pub parent: NodeId,
}

/// A leaf's path, bottom-up: `steps()[0]` joins the leaf with its sibling,
/// the last step produces the root.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    steps: [Step; MAX_PATH],
    len: usize,
}

impl Path {
    /// The path of leaf `index` in a tree of `count` leaves
    /// (`index < count`).
    pub fn new(count: u16, index: u16) -> Self {
        debug_assert!(index < count);
        let blank = Step {
            sibling: NodeId(0),
            sibling_is_left: false,
            parent: NodeId(0),
        };
        let mut steps = [blank; MAX_PATH];
        let mut len = 0;
        let (mut start, mut width) = (0u16, count);
        while width > 1 {
            let left = left_len(width);
            let mid = start + left;
            let parent = NodeId(2 * mid - 1);
            let step = if index < mid {
                let s = Step {
                    sibling: NodeId::of_range(mid, width - left),
                    sibling_is_left: false,
                    parent,
                };
                width = left;
                s
            } else {
                let s = Step {
                    sibling: NodeId::of_range(start, left),
                    sibling_is_left: true,
                    parent,
                };
                start = mid;
                width -= left;
                s
            };
            steps[len] = step;
            len += 1;
        }
        steps[..len].reverse();
        Path { steps, len }
    }

    /// The steps, leaf first.
    pub fn steps(&self) -> &[Step] {
        &self.steps[..self.len]
    }

    /// Number of levels between the leaf and the root.
    pub fn depth(&self) -> usize {
        self.len
    }
}

/// The chaining value of leaf `index` (a tree of at least two leaves).
pub fn leaf_cv(chunk: &[u8; CHUNK_LEN], index: u16) -> Cv {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(u64::from(index) * CHUNK_LEN as u64);
    h.update(chunk);
    h.finalize_non_root()
}

/// Joins two children into a parent; `is_root` finalizes the root.
pub fn parent(left: &Cv, right: &Cv, is_root: bool) -> Cv {
    if is_root {
        *merge_subtrees_root(left, right, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(left, right, Mode::Hash)
    }
}

/// The root of a whole batch given its contiguous chunk images: plain
/// BLAKE3 of their concatenation, hashed many chunks at a time, so any BLAKE3
/// implementation can check it.
pub fn batch_root(leaves: &[[u8; CHUNK_LEN]]) -> Cv {
    *blake3::hash(leaves.as_flattened()).as_bytes()
}

/// Writes every node of the tree over the chaining values `leaves` (at
/// least two) into `nodes`, indexed by node id (at least `2 * leaves.len()
/// - 1` of them), and returns the root. Allocates nothing.
pub fn fill_nodes(leaves: &[Cv], nodes: &mut [Cv]) -> Cv {
    debug_assert!(leaves.len() >= 2 && nodes.len() + 1 >= 2 * leaves.len());
    fill_range(leaves, nodes, 0, leaves.len() as u16, true)
}

fn fill_range(leaves: &[Cv], nodes: &mut [Cv], start: u16, len: u16, is_root: bool) -> Cv {
    let cv = if len == 1 {
        leaves[usize::from(start)]
    } else {
        let left = left_len(len);
        let l = fill_range(leaves, nodes, start, left, false);
        let r = fill_range(leaves, nodes, start + left, len - left, false);
        parent(&l, &r, is_root)
    };
    nodes[usize::from(NodeId::of_range(start, len).0)] = cv;
    cv
}

/// Every node of a batch tree, as the source needs them to hand out proofs.
#[derive(Debug, Clone)]
pub struct BatchTree {
    count: u16,
    /// Chaining values by node id; the root's slot holds the root hash.
    nodes: Vec<Cv>,
}

impl BatchTree {
    /// Hashes the leaves one by one, keeping every node. `leaves` holds
    /// between 1 and `u16::MAX` chunk images.
    pub fn build(leaves: &[[u8; CHUNK_LEN]]) -> Self {
        let count = leaves.len() as u16;
        let mut nodes = vec![[0u8; 32]; usize::from(count) * 2 - 1];
        if count == 1 {
            nodes[0] = *blake3::hash(&leaves[0]).as_bytes();
        } else {
            let cvs: Vec<Cv> = (0..count)
                .map(|i| leaf_cv(&leaves[usize::from(i)], i))
                .collect();
            fill_nodes(&cvs, &mut nodes);
        }
        BatchTree { count, nodes }
    }

    /// Number of leaves.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The root hash (what the source signs).
    pub fn root(&self) -> Cv {
        self.nodes[usize::from(NodeId::of_range(0, self.count).0)]
    }

    /// The chaining value of a non-root node.
    pub fn node(&self, id: NodeId) -> Cv {
        self.nodes[usize::from(id.0)]
    }
}
