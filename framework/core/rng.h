// Counter-based random numbers: value i of a stream depends only on (seed, i), never on how the
// work is split across threads, ranks or devices, so every backend fills a tensor identically.
#pragma once

#include <stdint.h>

#include "framework/core/host_device.h"

// SplitMix64's finaliser: a bijective mixer with good avalanche.
YP_HOST_DEVICE static inline uint64_t rng_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits, element `index` of stream `seed`.
YP_HOST_DEVICE static inline float rng_uniform(uint64_t seed, uint64_t index) {
    uint64_t bits = rng_mix64(rng_mix64(seed) ^ index);
    return (float)(bits >> 40) * (1.0f / 16777216.0f);
}

// Derives a stream seed from a parent seed and a name (FNV-1a over the name), so a parameter's
// initial values depend on its name, not on where it sits in memory or which stage owns it.
static inline uint64_t rng_seed_for_name(uint64_t parent, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return rng_mix64(parent ^ h);
}
