//! Which store paths share a layer.
//!
//! Registries and runtimes share layers by digest, so the best plan gives each
//! store path its own layer; images have a layer budget, though (`maxLayers`),
//! and large closures must be grouped. The plan is a pure function of the
//! closure and the budget: the input order never matters.
//!
//! The algorithm:
//! 1. *Popularity* of a path is the number of closure paths that depend on it,
//!    transitively, itself included: a glibc that everything needs scores the
//!    closure size, the application at the top scores 1. Paths are ranked by
//!    (popularity descending, NAR size descending, store path ascending), so base
//!    paths, which change least often and are shared most widely, come first.
//! 2. With no more paths than the budget, each path gets its own layer.
//! 3. Otherwise every path of at least `total / budget` bytes gets its own layer
//!    (at most `budget - 1` of them, largest first, so one group remains), and
//!    the rest, kept in rank order, are cut into the remaining number of
//!    contiguous groups. The cut minimises the largest group: a binary search
//!    finds the smallest size cap for which a greedy fill needs no more groups
//!    than remain. That cap is then rounded up to a coarse grid (steps of at
//!    most 1/8) so that a small change in one path's size rarely moves it, and
//!    the greedy fill with the same cap then reproduces every group that lies
//!    before the changed path. The fill closes groups early near the end so
//!    that the whole budget is used.
//! 4. Layers are ordered by the best rank they contain: base layers first, the
//!    application's last.
//!
//! Unlike a scheme that gives the popular paths one layer each and piles
//! everything left into a final layer, no layer here holds much more than
//! `2 * total / budget` bytes (at most `2.25 *` with the rounding) unless a
//! single path is that large; a leaf path that changes, which ranks last,
//! disturbs only the last groups.

use std::cmp::Reverse;

use gpubox_nix::{Closure, PathInfo, StorePath};

/// Store paths that go into one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedLayer {
    /// Sorted.
    pub paths: Vec<StorePath>,
    /// Sum of the paths' NAR sizes.
    pub size: u64,
}

/// Splits `closure` into at most `budget` layers (a budget of 0 counts as 1),
/// every path in exactly one, as the module documentation describes.
pub fn plan(closure: &Closure, budget: usize) -> Vec<PlannedLayer> {
    let budget = budget.max(1);
    let infos: Vec<&PathInfo> = closure.paths().collect();
    let ranked = rank(&infos);
    if infos.len() <= budget {
        return ranked.iter().map(|&i| layer(&infos, &[i])).collect();
    }

    let total = sum_sizes(&infos, &ranked);
    let mut big: Vec<usize> = ranked
        .iter()
        .copied()
        .filter(|&i| u128::from(infos[i].nar_size) * budget as u128 >= u128::from(total))
        .collect();
    big.sort_by_key(|&i| Reverse(infos[i].nar_size));
    big.truncate(budget - 1);

    let small: Vec<usize> = ranked
        .iter()
        .copied()
        .filter(|i| !big.contains(i))
        .collect();
    let group_count = budget - big.len();
    let mut groups = fill_groups(&infos, &small, group_count);
    groups.extend(big.into_iter().map(|i| vec![i]));

    // `ranked` positions, to put each layer where its best-ranked path is.
    let mut position = vec![0; infos.len()];
    for (pos, &i) in ranked.iter().enumerate() {
        position[i] = pos;
    }
    groups.sort_by_key(|group| group.iter().map(|&i| position[i]).min());
    groups.iter().map(|group| layer(&infos, group)).collect()
}

/// Indices into `infos` (which is sorted by store path) in rank order.
fn rank(infos: &[&PathInfo]) -> Vec<usize> {
    let index_of = |path: &StorePath| infos.binary_search_by(|info| info.path.cmp(path)).ok();
    // References outside the closure or to the path itself do not count.
    let references: Vec<Vec<usize>> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            info.references
                .iter()
                .filter_map(index_of)
                .filter(|&r| r != i)
                .collect()
        })
        .collect();

    // Walk each path's closure once, crediting every path reached. `seen_from`
    // marks visits per walk, so cycles (absent from real stores, possible in
    // hand-made closures) end the walk instead of looping.
    let mut popularity = vec![0usize; infos.len()];
    let mut seen_from = vec![usize::MAX; infos.len()];
    let mut stack = Vec::new();
    for start in 0..infos.len() {
        seen_from[start] = start;
        stack.push(start);
        while let Some(i) = stack.pop() {
            popularity[i] += 1;
            for &r in &references[i] {
                if seen_from[r] != start {
                    seen_from[r] = start;
                    stack.push(r);
                }
            }
        }
    }

    let mut ranked: Vec<usize> = (0..infos.len()).collect();
    ranked.sort_by_key(|&i| (Reverse(popularity[i]), Reverse(infos[i].nar_size), i));
    ranked
}

/// Cuts `small` (in rank order) into exactly `group_count` contiguous groups,
/// or one per path when there are fewer, keeping the largest group small.
fn fill_groups(infos: &[&PathInfo], small: &[usize], group_count: usize) -> Vec<Vec<usize>> {
    let sizes: Vec<u64> = small.iter().map(|&i| infos[i].nar_size).collect();
    let groups_needed = |cap: u64| {
        let mut count = 1;
        let mut fill = 0u64;
        for &size in &sizes {
            if fill > 0 && fill.saturating_add(size) > cap {
                count += 1;
                fill = 0;
            }
            fill = fill.saturating_add(size);
        }
        count
    };
    let mut low = sizes.iter().copied().max().unwrap_or(0);
    let mut high = sizes.iter().fold(0u64, |sum, &s| sum.saturating_add(s));
    while low < high {
        let mid = low + (high - low) / 2;
        if groups_needed(mid) <= group_count {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    let cap = round_up_coarsely(low);

    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(group_count);
    let mut current = Vec::new();
    let mut fill = 0u64;
    for (k, (&i, &size)) in small.iter().zip(&sizes).enumerate() {
        let left_including_this = small.len() - k;
        let groups_after_current = group_count - groups.len() - 1;
        let over_cap = fill.saturating_add(size) > cap;
        if !current.is_empty() && (over_cap || left_including_this <= groups_after_current) {
            groups.push(std::mem::take(&mut current));
            fill = 0;
        }
        current.push(i);
        fill = fill.saturating_add(size);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Rounds up to a number whose binary form has at most 4 significant bits,
/// i.e. to a grid with steps of at most 1/8 of the value.
fn round_up_coarsely(value: u64) -> u64 {
    let significant_bits = u64::BITS - value.leading_zeros();
    if significant_bits <= 4 {
        return value;
    }
    let step = 1u64 << (significant_bits - 4);
    value.div_ceil(step).saturating_mul(step)
}

fn sum_sizes(infos: &[&PathInfo], indices: &[usize]) -> u64 {
    indices
        .iter()
        .fold(0u64, |sum, &i| sum.saturating_add(infos[i].nar_size))
}

fn layer(infos: &[&PathInfo], indices: &[usize]) -> PlannedLayer {
    let mut paths: Vec<StorePath> = indices.iter().map(|&i| infos[i].path.clone()).collect();
    paths.sort();
    PlannedLayer {
        paths,
        size: sum_sizes(infos, indices),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn store_path(&mut self, name: &str) -> StorePath {
            let hash: String = (0..32)
                .map(|_| NIX_BASE32[self.below(32) as usize] as char)
                .collect();
            StorePath::parse(&format!("/nix/store/{hash}-{name}")).unwrap()
        }

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i as u64 + 1) as usize);
            }
        }
    }

    /// A closure shaped like a real one: `libc` first, referenced by all;
    /// every other path references a few earlier ones; `app` last, referencing
    /// every path nothing else references, so the closure is app's closure.
    /// Sizes are heavy-tailed, with a few huge paths like CUDA libraries.
    struct Synthetic {
        infos: Vec<PathInfo>,
        libc: StorePath,
        app: StorePath,
    }

    fn synthetic(seed: u64, len: usize) -> Synthetic {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut infos: Vec<PathInfo> = Vec::with_capacity(len);
        let mut referenced = vec![false; len];
        for i in 0..len {
            let name = match i {
                0 => "libc-2.40".to_owned(),
                i if i == len - 1 => "app-1.0".to_owned(),
                i => format!("lib{i}-1.0"),
            };
            let path = rng.store_path(&name);
            let mut references = vec![path.clone()];
            if i > 0 {
                references.push(infos[0].path.clone());
                referenced[0] = true;
            }
            if i == len - 1 {
                for (j, info) in infos.iter().enumerate() {
                    if !referenced[j] {
                        references.push(info.path.clone());
                    }
                }
            } else if i > 1 {
                for _ in 0..rng.below(4) {
                    let j = 1 + rng.below(i as u64 - 1) as usize;
                    referenced[j] = true;
                    references.push(infos[j].path.clone());
                }
            }
            let nar_size = match rng.below(20) {
                0 => 1_000_000_000 + rng.below(3_000_000_000),
                1..=5 => 1_000_000 + rng.below(50_000_000),
                _ => 100 + rng.below(500_000),
            };
            infos.push(PathInfo {
                path,
                nar_size,
                nar_hash: String::new(),
                references,
            });
        }
        Synthetic {
            libc: infos[0].path.clone(),
            app: infos[len - 1].path.clone(),
            infos,
        }
    }

    fn check_contract(closure: &Closure, budget: usize, layers: &[PlannedLayer], what: &str) {
        assert_eq!(
            layers.len(),
            closure.len().min(budget),
            "{what}: layer count"
        );
        let mut placed: Vec<&StorePath> = layers.iter().flat_map(|l| &l.paths).collect();
        placed.sort();
        let all: Vec<&StorePath> = closure.paths().map(|i| &i.path).collect();
        assert_eq!(placed, all, "{what}: every path exactly once");
        for layer in layers {
            assert!(!layer.paths.is_empty(), "{what}: empty layer");
            assert!(layer.paths.is_sorted(), "{what}: unsorted layer");
            let size: u64 = layer
                .paths
                .iter()
                .map(|p| closure.get(p).unwrap().nar_size)
                .sum();
            assert_eq!(layer.size, size, "{what}: layer size");
        }
        let largest_layer = layers.iter().map(|l| l.size).max().unwrap_or(0);
        let largest_path = closure.paths().map(|i| i.nar_size).max().unwrap_or(0);
        // 2 * total / budget, times 9/8 for the rounding of the cap.
        let bound = (u128::from(closure.total_nar_size()) * 9).div_ceil(4 * budget as u128);
        assert!(
            u128::from(largest_layer) <= bound.max(u128::from(largest_path)),
            "{what}: largest layer {largest_layer} exceeds {bound} (largest path {largest_path})"
        );
    }

    #[test]
    fn empty_closure_gives_no_layers() {
        assert!(plan(&Closure::default(), 1).is_empty());
        assert!(plan(&Closure::default(), 50).is_empty());
    }

    #[test]
    fn contract_holds_for_many_closures_and_budgets() {
        for seed in 1..=12 {
            for len in [1, 2, 3, 7, 40, 257] {
                let synthetic = synthetic(seed, len);
                let closure = Closure::from_infos(synthetic.infos.clone());
                let mut budgets = vec![1, 2, 3, 5, 50, 127];
                budgets.extend([len.saturating_sub(1).max(1), len, len + 5]);
                for budget in budgets {
                    let what = format!("seed {seed}, {len} paths, budget {budget}");
                    let layers = plan(&closure, budget);
                    check_contract(&closure, budget, &layers, &what);
                    assert!(
                        layers[0].paths.contains(&synthetic.libc),
                        "{what}: libc is not in the first layer"
                    );
                    // The app ranks last, so a layer of its own comes last.
                    let alone = [synthetic.app.clone()];
                    if let Some(at) = layers.iter().position(|l| l.paths == alone) {
                        assert_eq!(at, layers.len() - 1, "{what}: app's layer is not last");
                    }
                    if len <= budget {
                        assert!(layers.iter().all(|l| l.paths.len() == 1), "{what}");
                    }

                    let mut shuffled = synthetic.infos.clone();
                    Rng(seed + budget as u64).shuffle(&mut shuffled);
                    let reordered = plan(&Closure::from_infos(shuffled), budget);
                    assert_eq!(reordered, layers, "{what}: input order changed the plan");
                }
            }
        }
    }

    #[test]
    fn budget_zero_counts_as_one() {
        let closure = Closure::from_infos(synthetic(3, 5).infos);
        let layers = plan(&closure, 0);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].size, closure.total_nar_size());
    }

    #[test]
    fn equal_paths_are_spread_evenly_instead_of_piling_up() {
        let mut rng = Rng(7);
        let infos = (0..100)
            .map(|i| PathInfo {
                path: rng.store_path(&format!("p{i}")),
                nar_size: 1000,
                nar_hash: String::new(),
                references: vec![],
            })
            .collect();
        let layers = plan(&Closure::from_infos(infos), 10);
        let counts: Vec<usize> = layers.iter().map(|l| l.paths.len()).collect();
        assert_eq!(counts, [10; 10]);
    }

    #[test]
    fn huge_paths_get_their_own_layers() {
        let synthetic = synthetic(5, 200);
        let closure = Closure::from_infos(synthetic.infos);
        let budget = 20;
        let threshold = closure.total_nar_size() / budget as u64;
        let layers = plan(&closure, budget);
        let huge: Vec<&PathInfo> = closure
            .paths()
            .filter(|i| i.nar_size >= threshold)
            .collect();
        assert!(!huge.is_empty(), "the fixture should have huge paths");
        for info in huge {
            assert!(
                layers.iter().any(|l| l.paths == [info.path.clone()]),
                "{} ({} bytes) shares a layer",
                info.path,
                info.nar_size
            );
        }
    }

    #[test]
    fn changing_the_app_leaves_base_layers_alone() {
        let synthetic = synthetic(9, 300);
        let budget = 25;
        let before = plan(&Closure::from_infos(synthetic.infos.clone()), budget);

        let mut changed = synthetic.infos.clone();
        let app = changed.last_mut().unwrap();
        app.path = Rng(99).store_path("app-1.1");
        app.nar_size += app.nar_size / 50;
        let new_app = app.path.clone();
        let after = plan(&Closure::from_infos(changed), budget);

        assert_eq!(before.len(), after.len());
        let same = before
            .iter()
            .zip(&after)
            .take_while(|(b, a)| b == a)
            .count();
        assert!(
            same >= before.len() - 1,
            "only the app's layer may change; {same} of {} stayed",
            before.len()
        );
        assert!(after.last().unwrap().paths.contains(&new_app));
        assert!(!before.last().unwrap().paths.contains(&new_app));
        assert!(before.last().unwrap().paths.contains(&synthetic.app));
    }
}
