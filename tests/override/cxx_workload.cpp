// tests/override/cxx_workload.cpp - C++ through the override: containers,
// strings, threads, over-aligned new, exceptions. libstdc++'s operator new
// and delete call malloc and free, so under LD_PRELOAD=libpymalloc.so every
// allocation here goes through pymalloc. Output is deterministic: the same
// in every mode and under plain glibc.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct alignas(64) Aligned {
    unsigned char bytes[64];
};

static std::uint64_t checksum(const std::string &s)
{
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s)
        h = (h ^ c) * 1099511628211ull;
    return h;
}

int main()
{
    // Strings and maps: word frequencies of a generated text.
    std::vector<std::string> words;
    for (int i = 0; i < 50000; i++)
        words.push_back("w" + std::to_string((i * 7919) % 1013) + std::string(i % 40, 'x'));
    std::map<std::string, int> freq;
    std::unordered_map<std::string, std::vector<int>> where;
    for (std::size_t i = 0; i < words.size(); i++) {
        freq[words[i]]++;
        where[words[i]].push_back(static_cast<int>(i));
    }
    std::string joined;
    for (auto &kv : freq)
        joined += kv.first.substr(0, 6) + ":" + std::to_string(kv.second) + ";";
    std::printf("distinct=%zu where=%zu joined=%zu sum=%016llx\n", freq.size(), where.size(),
                joined.size(), static_cast<unsigned long long>(checksum(joined)));

    // Threads: each builds and sorts its own containers, then merges under a lock.
    std::mutex mu;
    std::vector<long> merged;
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; t++)
        pool.emplace_back([t, &mu, &merged] {
            std::vector<std::unique_ptr<std::string>> owned;
            std::vector<long> local;
            for (int i = 0; i < 20000; i++) {
                owned.push_back(std::make_unique<std::string>(std::to_string(i * (t + 1))));
                local.push_back(std::stol(*owned.back()) % 1000);
                if (i % 3 == 0)
                    owned.pop_back();
            }
            std::sort(local.begin(), local.end());
            auto shared = std::make_shared<std::vector<long>>(local.begin(), local.begin() + 100);
            std::lock_guard<std::mutex> g(mu);
            merged.insert(merged.end(), shared->begin(), shared->end());
        });
    for (auto &th : pool)
        th.join();
    std::sort(merged.begin(), merged.end());
    std::printf("merged=%zu total=%ld\n", merged.size(),
                std::accumulate(merged.begin(), merged.end(), 0L));

    // Over-aligned new (operator new(size_t, align_val_t) -> aligned_alloc).
    bool all_aligned = true;
    std::vector<std::unique_ptr<Aligned>> al;
    for (int i = 0; i < 1000; i++) {
        al.push_back(std::make_unique<Aligned>());
        all_aligned = all_aligned && (reinterpret_cast<std::uintptr_t>(al.back().get()) % 64 == 0);
    }
    std::printf("aligned=%s\n", all_aligned ? "yes" : "no");

    // Exceptions: __cxa_allocate_exception mallocs.
    int caught = 0;
    for (int i = 0; i < 1000; i++) {
        try {
            throw std::runtime_error("error number " + std::to_string(i));
        } catch (const std::exception &e) {
            caught += std::string(e.what()).size() > 10;
        }
    }
    std::printf("caught=%d\n", caught);
    return all_aligned && caught == 1000 ? 0 : 1;
}
