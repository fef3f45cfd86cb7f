package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// z99 is the 99th percentile of the standard normal distribution.
const z99 = 2.3263478740408408

// logNormal is a latency distribution: ln(latency) is normal with mean mu
// and standard deviation sigma. Fitting it to two quantiles gives
// mu = ln(p50) (the median of a log-normal is e^mu) and
// sigma = ln(p99/p50) / z99 (p99 = e^(mu + z99·sigma)). Real service
// latencies are right-skewed and never negative, which is why this shape
// and not a normal one.
type logNormal struct {
	mu, sigma float64
	// max caps a sample so that a wide fit cannot produce a minutes-long
	// call; at 10×p99 it is far beyond anything the fit draws in practice.
	max time.Duration
}

// fitLogNormal fits the distribution to p50 and p99; p50 <= 0 means no latency.
func fitLogNormal(p50, p99 time.Duration) logNormal {
	if p50 <= 0 {
		return logNormal{}
	}
	p99 = max(p99, p50)
	return logNormal{
		mu:    math.Log(float64(p50)),
		sigma: math.Log(float64(p99)/float64(p50)) / z99,
		max:   10 * p99,
	}
}

// sample draws one latency from rng.
func (l logNormal) sample(rng *rand.Rand) time.Duration {
	if l.max == 0 {
		return 0
	}
	d := time.Duration(math.Exp(l.mu + l.sigma*rng.NormFloat64()))
	return min(d, l.max)
}
