package scheduler

import "sort"

// maxWeight bounds a weight so that total × weight fits in an int64.
const maxWeight = 1_000_000_000

// Divide splits total replicas over clusters in proportion to their weights. Each cluster
// first gets minPer (or an equal share of total when there are not enough replicas for that);
// the rest goes by weight, rounded down, and what rounding leaves over goes one by one to the
// largest remainders, ties to the larger weight, then to the earlier cluster. The result
// depends only on the arguments, and sums to total. Negative weights count as 0; when every
// weight is 0 the clusters share equally.
func Divide(total int32, weights []int64, minPer int32) []int32 {
	n := len(weights)
	out := make([]int32, n)
	if n == 0 || total <= 0 {
		return out
	}
	w := make([]int64, n)
	var sum int64
	for i, x := range weights {
		w[i] = min(max(x, 0), maxWeight)
		sum += w[i]
	}
	if sum == 0 {
		for i := range w {
			w[i] = 1
		}
		sum = int64(n)
	}
	base := max(minPer, 0)
	if int64(base)*int64(n) > int64(total) {
		base = total / int32(n)
	}
	for i := range out {
		out[i] = base
	}
	rest := int64(total) - int64(base)*int64(n)
	var given int64
	rem := make([]int64, n)
	for i := range w {
		share := rest * w[i] / sum
		rem[i] = rest * w[i] % sum
		out[i] += int32(share)
		given += share
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		i, j := order[a], order[b]
		if rem[i] != rem[j] {
			return rem[i] > rem[j]
		}
		return w[i] > w[j]
	})
	for k := int64(0); k < rest-given; k++ {
		out[order[k%int64(n)]]++
	}
	return out
}

// Fit is how many replicas needing per each fit into free: the least over CPU, memory and
// pods of those the replica asks for. A replica that asks for nothing is limited by pods only.
func Fit(free Resources, per Resources) int64 {
	fit := max(free.Pods, 0)
	if per.MilliCPU > 0 {
		fit = min(fit, max(free.MilliCPU, 0)/per.MilliCPU)
	}
	if per.Memory > 0 {
		fit = min(fit, max(free.Memory, 0)/per.Memory)
	}
	return fit
}
