// Stress for the SIGPROF handler at a high rate: threads created and
// joined in a loop, dlopen/dlclose of a real library in a loop, and C++
// exceptions thrown across several frames, all at once. It must finish
// without deadlock or crash and print the same line as without libcprof.
// Usage: stress PLUGIN_PATH SECONDS
#include <dlfcn.h>
#include <pthread.h>
#include <stdexcept>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

static std::atomic<bool> stop{false};
static std::atomic<unsigned long> throws{0}, loads{0}, threads_made{0};
static volatile unsigned long sink;

__attribute__((noinline)) static void deep_throw(int depth)
{
	if (depth == 0)
		throw std::runtime_error("deep");
	sink = sink + depth;
	deep_throw(depth - 1);
	sink = sink + 1;
}

static void exceptions_loop()
{
	while (!stop.load()) {
		try {
			deep_throw(12);
		} catch (const std::exception &) {
			throws++;
		}
	}
}

static void dlopen_loop(const char *path)
{
	while (!stop.load()) {
		void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			std::fprintf(stderr, "dlopen: %s\n", dlerror());
			std::exit(2);
		}
		auto fn = (unsigned long (*)(unsigned long))dlsym(h, "plugin_work");
		sink = sink + fn(20000);
		dlclose(h);
		loads++;
	}
}

static void *short_thread(void *arg)
{
	unsigned long x = (unsigned long)arg;
	for (int i = 0; i < 20000; i++)
		x = x * 6364136223846793005UL + 1;
	sink = sink + x;
	return nullptr;
}

static void threads_loop()
{
	while (!stop.load()) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			pthread_create(&t[i], nullptr, short_thread, (void *)(long)i);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], nullptr);
		threads_made += 4;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		std::fprintf(stderr, "usage: stress PLUGIN SECONDS\n");
		return 2;
	}
	double seconds = std::atof(argv[2]);
	std::vector<std::thread> workers;
	workers.emplace_back(exceptions_loop);
	workers.emplace_back(dlopen_loop, argv[1]);
	workers.emplace_back(threads_loop);
	std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
	stop = true;
	for (auto &w : workers)
		w.join();
	bool ok = throws > 0 && loads > 0 && threads_made > 0;
	std::printf("stress finished: %s\n", ok ? "all loops ran" : "a loop never ran");
	return ok ? 0 : 1;
}
