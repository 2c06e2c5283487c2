//! The order a weighted tier visits its deployments in.

/// Longest weighted schedule; larger weight totals are scaled down proportionally.
pub(super) const MAX_SCHEDULE: u64 = 4096;

/// Smooth weighted round-robin (nginx): a sequence in which each index appears in proportion
/// to its weight, spread out evenly.
pub(super) fn smooth_weighted_schedule(weights: &[u64]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: u64 = weights.iter().sum();
    let total_signed = i64::try_from(total).unwrap_or(i64::MAX);
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += i64::try_from(*w).unwrap_or(i64::MAX);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total_signed;
            best
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
