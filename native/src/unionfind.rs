//! Connected components of an edge list over arbitrary u64 node ids.
//!
//! Node ids are mapped to dense indices by sorting the distinct ids, so index order is id order.
//! Union-find uses union by size and path halving (a form of path compression); each set also
//! tracks its smallest index, so the reported root of every component is its minimum node id,
//! independent of edge order.

use crate::error::{invalid, try_zeroed, Result};
use rayon::prelude::*;

/// Disjoint sets over `0..n` with union by size and path halving.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
    min: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Result<Self> {
        if n > u32::MAX as usize {
            return invalid(format!(
                "too many distinct nodes ({n}); at most {}",
                u32::MAX
            ));
        }
        let mut parent: Vec<u32> = try_zeroed(n, "union-find parents")?;
        for (i, p) in parent.iter_mut().enumerate() {
            *p = i as u32;
        }
        let min = parent.clone();
        let mut size: Vec<u32> = try_zeroed(n, "union-find sizes")?;
        size.fill(1);
        Ok(UnionFind { parent, size, min })
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let gp = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
        x
    }

    pub fn union(&mut self, a: u32, b: u32) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
        self.min[ra as usize] = self.min[ra as usize].min(self.min[rb as usize]);
    }

    /// Smallest element of the set holding `x`.
    pub fn min_of(&mut self, x: u32) -> u32 {
        let r = self.find(x);
        self.min[r as usize]
    }
}

/// Components of the graph with edges `src[i] - dst[i]`.
///
/// Returns `(nodes, roots)`: every distinct node id in ascending order, and for each the smallest
/// node id of its component.
pub fn connected_components(src: &[u64], dst: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
    if src.len() != dst.len() {
        return invalid(format!(
            "src and dst must have the same length, got {} and {}",
            src.len(),
            dst.len()
        ));
    }
    let mut nodes: Vec<u64> = Vec::new();
    nodes
        .try_reserve_exact(src.len() * 2)
        .map_err(|_| crate::error::CoreError::Memory("cannot allocate the node list".into()))?;
    nodes.extend_from_slice(src);
    nodes.extend_from_slice(dst);
    nodes.par_sort_unstable();
    nodes.dedup();
    let mut uf = UnionFind::new(nodes.len())?;
    // Every id is in `nodes`, so the searches succeed; indices fit u32 (checked by UnionFind::new).
    let index = |id: u64| nodes.binary_search(&id).unwrap_or(0) as u32;
    let pairs: Vec<(u32, u32)> = src
        .par_iter()
        .zip(dst.par_iter())
        .map(|(&s, &d)| (index(s), index(d)))
        .collect();
    for (a, b) in pairs {
        uf.union(a, b);
    }
    let roots: Vec<u64> = (0..nodes.len() as u32)
        .map(|i| nodes[uf.min_of(i) as usize])
        .collect();
    Ok((nodes, roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_with_min_roots() {
        let (nodes, roots) = connected_components(&[10, 3, 7, 100], &[3, 5, 8, u64::MAX]).unwrap();
        assert_eq!(nodes, [3, 5, 7, 8, 10, 100, u64::MAX]);
        assert_eq!(roots, [3, 3, 7, 7, 3, 100, 100]);
    }

    #[test]
    fn order_independent() {
        let src = [5u64, 1, 9, 2, 9];
        let dst = [6u64, 2, 8, 6, 9];
        let a = connected_components(&src, &dst).unwrap();
        let mut rs = src;
        let mut rd = dst;
        rs.reverse();
        rd.reverse();
        let b = connected_components(&rd, &rs).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.1, [1, 1, 1, 1, 8, 8]);
    }

    #[test]
    fn empty_and_mismatch() {
        assert_eq!(connected_components(&[], &[]).unwrap(), (vec![], vec![]));
        assert!(connected_components(&[1], &[]).is_err());
    }

    #[test]
    fn long_chain() {
        let n = 100_000u64;
        let src: Vec<u64> = (1..n).rev().collect();
        let dst: Vec<u64> = (0..n - 1).rev().collect();
        let (nodes, roots) = connected_components(&src, &dst).unwrap();
        assert_eq!(nodes.len(), n as usize);
        assert!(roots.iter().all(|&r| r == 0));
    }
}
