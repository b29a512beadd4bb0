// C++ allocations reach the heap profile through libstdc++'s operator new,
// which calls malloc. build_tree keeps 20000 nodes of 64 bytes (new Node);
// fill_vectors keeps 100 vectors of 1000 ints (4000 bytes each, through
// std::allocator); scratch_strings allocates and frees. An aligned type
// goes through the aligned operator new (aligned_alloc).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

struct Node {
	Node *left, *right;
	long payload[6];
};

struct alignas(256) Wide {
	char bytes[512];
};

static std::vector<Node *> nodes;
static std::vector<std::vector<int> *> vectors;
static std::vector<Wide *> wides;

__attribute__((noinline)) static void build_tree()
{
	for (int i = 0; i < 20000; i++)
		nodes.push_back(new Node());
}

__attribute__((noinline)) static void fill_vectors()
{
	for (int i = 0; i < 100; i++)
		vectors.push_back(new std::vector<int>(1000, i));
}

__attribute__((noinline)) static size_t scratch_strings()
{
	size_t total = 0;
	for (int i = 0; i < 10000; i++) {
		std::string s(100 + i % 900, 'x');
		total += s.size();
	}
	return total;
}

__attribute__((noinline)) static void make_wides()
{
	for (int i = 0; i < 100; i++)
		wides.push_back(new Wide());
}

int main()
{
	nodes.reserve(20000);
	vectors.reserve(100);
	wides.reserve(100);
	build_tree();
	fill_vectors();
	size_t total = scratch_strings();
	make_wides();
	std::fprintf(stderr, "nodes %zu vectors %zu strings %zu\n", nodes.size(), vectors.size(), total);
	return 0;
}
