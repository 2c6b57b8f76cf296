// SPDX-License-Identifier: BSD-3-Clause
// oneDNN convolutions for the CPU (see onednn_convolutions.h).
#include "onednn_convolutions.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/modules/batchnorm.h>

#include "frcnn-build-config.h"
#include "frcnn/error.h"
#include "parts.h"

#if FRCNN_HAVE_ONEDNN
#include <dnnl.hpp>
#endif

namespace F = torch::nn::functional;

namespace frcnn::detail {

bool onednn_built()
{
	return FRCNN_HAVE_ONEDNN != 0;
}

std::string onednn_unsupported_reason(const ModelConfig &config)
{
	if (!onednn_built())
		return "this build of libfrcnn has no oneDNN (install libdnnl-dev and rebuild)";
	if (config.backbone != "resnet" && config.backbone != "mobilenet_v3_large")
		return "the oneDNN convolutions cover ResNet and MobileNetV3-Large backbones, not " + config.backbone;
	if (config.norm != "frozen_bn" && config.norm != "batch_norm")
		return "the oneDNN convolutions do not cover norm '" + config.norm + "'";
	return {};
}

bool onednn_has_winograd()
{
#if FRCNN_HAVE_ONEDNN
	const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
	return (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & avx512) == avx512;
#else
	return false;
#endif
}

bool onednn_pays(const ModelConfig &config)
{
	if (!onednn_unsupported_reason(config).empty())
		return false;
	// MobileNetV3: its depthwise and 1x1 convolutions channels-last with their batch norms and
	// activations fused ran fasterrcnn_mobilenet_v3_large_fpn 4.3 times as fast as LibTorch's
	// operators (planar, each batch norm a pass of its own) with AVX-512; 5.5 times with AVX2
	// only, when LibTorch's path still added each block's input into a new map.
	if (config.backbone == "mobilenet_v3_large")
		return true;
	return config.fpn_channels >= 128 ||
	       (config.fpn_channels >= kWinogradMinChannelsAfterTrunk && onednn_has_winograd());
}

#if FRCNN_HAVE_ONEDNN

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

// oneDNN's name of a tensor element type: float, or bfloat16 for a bf16 model.
memory::data_type data_type_of(torch::ScalarType type)
{
	return type == torch::kBFloat16 ? memory::data_type::bf16 : kF32;
}

dnnl::engine &cpu_engine()
{
	static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
	return engine;
}

// A contiguous float or bfloat16 tensor as the oneDNN memory it is, channels-last (NHWC) or
// planar (NCHW), without copying.
memory wrap(const torch::Tensor &t, bool planar = false)
{
	return memory(memory::desc({t.size(0), t.size(1), t.size(2), t.size(3)}, data_type_of(t.scalar_type()),
				   planar ? Tag::nchw : Tag::nhwc),
		      cpu_engine(), t.data_ptr());
}

// Planar input is taken as it is (the batch, whose 3 channels a planar kernel reads best);
// everything else goes channels-last.
bool is_planar(const torch::Tensor &t)
{
	return t.is_contiguous() && !t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Primitives get their scratch memory from the caller: with oneDNN's own ("library") scratchpad,
// which is per thread, a primitive made in one thread crashes when another runs it (a pipeline
// runs each stream in a thread of its own, and makes a new one after every stop).
dnnl::primitive_attr user_scratchpad()
{
	dnnl::primitive_attr attr;
	attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
	return attr;
}

// A primitive with the size of scratch memory it needs.
struct Step {
	dnnl::primitive primitive;
	size_t scratchpad_bytes = 0;

	Step() = default;
	template <typename Primitive>
	static Step of(const typename Primitive::primitive_desc &pd)
	{
		Step step;
		step.primitive = Primitive(pd);
		step.scratchpad_bytes = pd.scratchpad_desc().get_size();
		return step;
	}

	void run(dnnl::stream &stream, std::unordered_map<int, memory> args, void *scratchpad) const
	{
		if (scratchpad_bytes > 0)
			args[DNNL_ARG_SCRATCHPAD] = memory(memory::desc({(int64_t)scratchpad_bytes}, memory::data_type::u8, Tag::x),
							   cpu_engine(), scratchpad);
		primitive.execute(stream, args);
		stream.wait();
	}
};

// A layer's primitives, planned per input size. Every frame size makes primitives of its own
// (photos of many sizes, a stream whose caps change): those of the last few sizes are kept.
template <typename Key, typename Plan>
class RecentPlans {
public:
	Plan *find(const Key &key)
	{
		const auto found = plans_.find(key);
		return found == plans_.end() ? nullptr : &found->second;
	}
	Plan &add(const Key &key, Plan plan)
	{
		if (plans_.size() >= kMaxPlans) {
			plans_.erase(order_.front());
			order_.erase(order_.begin());
		}
		order_.push_back(key);
		return plans_.emplace(key, std::move(plan)).first->second;
	}
	// oneDNN's names of the implementations planned.
	std::vector<std::string> implementation_names() const
	{
		std::vector<std::string> names;
		for (const auto &entry : plans_)
			names.push_back(entry.second.implementation);
		return names;
	}

private:
	static constexpr size_t kMaxPlans = 8;
	std::map<Key, Plan> plans_;
	std::vector<Key> order_; // oldest first
};

// The 8-bit type of a layer's quantized input: unsigned out of a ReLU, else signed.
memory::data_type quantized_type(bool unsigned_input)
{
	return unsigned_input ? memory::data_type::u8 : memory::data_type::s8;
}

// The largest absolute value a layer's input takes while observing (OneDnnPlan::set_observing),
// found in one pass without a copy (x.abs() of the box head's input would take 50 MB a frame).
class RangeObserver {
public:
	void set_observing(bool observing)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		if (observing && !observing_)
			range_ = 0;
		observing_ = observing;
	}
	bool observing()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return observing_;
	}
	void observe(const torch::Tensor &x)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		if (!observing_ || x.numel() == 0)
			return;
		const auto [least, most] = at::aminmax(x);
		range_ = std::max({range_, -least.item<float>(), most.item<float>()});
	}
	float range()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return range_;
	}

private:
	std::mutex mutex_;
	bool observing_ = false;
	float range_ = 0;
};

// The scales of an 8-bit layer (a convolution or a linear layer): the input's from its range
// (range / 255 for an input out of a ReLU, unsigned, else range / 127), each output channel's
// weights' from their largest magnitude (symmetric, to +-127).
struct Int8Scales {
	float input = 1;
	std::vector<float> output;	      // per output channel: input scale x its weights' scale
	std::vector<float> weight_quantizers; // per output channel: 1 / its weights' scale
	torch::Tensor bias;		      // the float bias / output scale: oneDNN 2 adds it before scaling

	// weight: float [O, ...] (a convolution's with its batch norm folded in); bias: float [O]
	// or undefined.
	static Int8Scales of(const torch::Tensor &weight, const torch::Tensor &bias, float range, bool unsigned_input)
	{
		TORCH_CHECK(weight.scalar_type() == torch::kFloat, "oneDNN: 8 bits from float weights only");
		TORCH_CHECK(std::isfinite(range) && range > 0, "oneDNN: an 8-bit range not finite and positive");
		torch::NoGradGuard no_grad;
		std::vector<int64_t> reduced;
		for (int64_t d = 1; d < weight.dim(); d++)
			reduced.push_back(d);
		auto weight_scale = weight.abs().amax(reduced) / 127.0f;
		// A channel of zeros: any scale quantizes it to zeros.
		weight_scale = torch::where(weight_scale > 0, weight_scale, torch::ones_like(weight_scale)).contiguous();
		Int8Scales scales;
		scales.input = range / (unsigned_input ? 255.0f : 127.0f);
		const auto output = (weight_scale * scales.input).contiguous();
		scales.bias = ((bias.defined() ? bias.to(torch::kFloat) : torch::zeros_like(output)) / output).contiguous();
		scales.output.assign(output.data_ptr<float>(), output.data_ptr<float>() + output.numel());
		const auto inverse = (1.0f / weight_scale).contiguous();
		scales.weight_quantizers.assign(inverse.data_ptr<float>(), inverse.data_ptr<float>() + inverse.numel());
		return scales;
	}
};

// Float weights (`plain`, in `plain_desc`'s layout) reordered into `desc`, the layout and type a
// primitive wants; with `quantizers` (8 bits), each output channel multiplied by its own first.
dnnl::memory reordered_weights(const dnnl::memory::desc &plain_desc, const torch::Tensor &plain,
			       const dnnl::memory::desc &desc, const std::vector<float> *quantizers)
{
	auto &engine = cpu_engine();
	dnnl::memory from(plain_desc, engine, plain.data_ptr());
	dnnl::memory weights(desc, engine);
	auto attr = user_scratchpad();
	if (quantizers != nullptr)
		attr.set_output_scales(1 << 0, *quantizers);
	const auto reorder = Step::of<dnnl::reorder>(dnnl::reorder::primitive_desc(engine, plain_desc, engine, desc, attr));
	auto scratchpad = torch::empty({(int64_t)reorder.scratchpad_bytes + 1}, torch::kByte);
	dnnl::stream stream(engine);
	reorder.run(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, weights}}, scratchpad.data_ptr());
	return weights;
}

// oneDNN's own errors (an unsupported shape, memory) as frcnn::Error with what to do about them.
template <typename Function>
auto reporting_errors(Function &&function)
{
	try {
		return function();
	} catch (const dnnl::error &e) {
		throw Error(std::string("oneDNN convolution failed: ") + e.what() +
			    " (status " + std::to_string((int)e.status) + "); cpu-convolutions=libtorch runs without oneDNN");
	}
}

} // namespace

// The convolutions' outputs, feature maps of up to several MB each, in blocks kept for the next
// batches: memory that goes back to glibc is often given back to the system (a pipeline's
// streaming thread has an arena of its own, which does so readily) and faulted in again, a 4 KiB
// page at a time, at every frame. A block returns to the pool when the last tensor on it is let
// go, on whatever thread; blocks that no batch took for kIdleBatches batches are freed (after a
// change of frame size, or a smaller last batch). Small outputs come from LibTorch as usual.
class OneDnnOutputPool : public std::enable_shared_from_this<OneDnnOutputPool> {
public:
	static constexpr size_t kMinBytes = 128 * 1024; // glibc's own mmap threshold to begin with
	static constexpr uint64_t kIdleBatches = 2;

	~OneDnnOutputPool()
	{
		for (auto &entry : free_)
			std::free(entry.second.data);
	}

	// A tensor of `shape` [N, C, H, W] and `dtype`, channels-last.
	torch::Tensor channels_last(const std::vector<int64_t> &shape, torch::ScalarType dtype)
	{
		const int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
		const size_t bytes = (size_t)(n * c * h * w) * c10::elementSize(dtype);
		const auto options = torch::TensorOptions(dtype);
		if (bytes < kMinBytes)
			return torch::empty(shape, options.memory_format(at::MemoryFormat::ChannelsLast));
		const size_t size = (bytes + 4095) / 4096 * 4096;
		void *data = take(size);
		try {
			std::shared_ptr<OneDnnOutputPool> self = shared_from_this();
			return torch::from_blob(data, shape, {h * w * c, 1, w * c, c},
						[self, size](void *block) { self->give_back(block, size); }, options);
		} catch (...) {
			give_back(data, size);
			throw;
		}
	}

	// Called as each batch starts: frees the blocks idle for too long.
	void next_batch()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		batch_++;
		for (auto it = free_.begin(); it != free_.end();) {
			if (batch_ - it->second.last_batch > kIdleBatches) {
				std::free(it->second.data);
				it = free_.erase(it);
			} else {
				++it;
			}
		}
	}

	OneDnnOutputMemory memory()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		OneDnnOutputMemory m;
		m.blocks_made = made_;
		m.blocks_kept = free_.size();
		for (const auto &entry : free_)
			m.bytes_kept += entry.first;
		return m;
	}

private:
	struct Block {
		void *data;
		uint64_t last_batch; // the batch that gave it back
	};

	void *take(size_t size)
	{
		{
			std::lock_guard<std::mutex> lock(mutex_);
			auto it = free_.find(size);
			if (it != free_.end()) {
				void *data = it->second.data;
				free_.erase(it);
				return data;
			}
		}
		void *data = std::aligned_alloc(64, size);
		if (data == nullptr)
			throw std::bad_alloc();
		std::lock_guard<std::mutex> lock(mutex_);
		made_++;
		return data;
	}

	void give_back(void *data, size_t size)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		free_.emplace(size, Block{data, batch_});
	}

	std::mutex mutex_;
	std::multimap<size_t, Block> free_; // by size
	uint64_t batch_ = 0;
	size_t made_ = 0;
};

// Memory that the convolutions of one plan use during a call and not after (Winograd's blocked
// copies of input and output, and oneDNN's scratch memory, 100 MB and more for a large feature
// map): kept from call to call, since freshly mapped memory costs a page fault per 4 KiB at
// every frame. It grows to the largest need and is used by one convolution at a time. Their
// outputs come from `outputs`.
class OneDnnWorkspace {
public:
	const std::shared_ptr<OneDnnOutputPool> outputs = std::make_shared<OneDnnOutputPool>();

	struct Lease {
		std::unique_lock<std::mutex> lock;
		uint8_t *data;
	};

	Lease lease(size_t bytes)
	{
		std::unique_lock<std::mutex> lock(mutex_);
		if (!buffer_.defined() || (size_t)buffer_.numel() < bytes) {
			buffer_ = torch::Tensor(); // the old one goes before the larger one comes
			buffer_ = torch::empty({(int64_t)bytes}, torch::kByte);
		}
		return {std::move(lock), buffer_.data_ptr<uint8_t>()};
	}

private:
	std::mutex mutex_;
	torch::Tensor buffer_;
};

namespace {

// Offsets of consecutive parts of a workspace, each on its own cache lines.
size_t aligned(size_t bytes)
{
	return (bytes + 4095) / 4096 * 4096;
}

} // namespace

// One convolution with its epilogue: + bias, [+ addend], [ReLU]. Primitives are made per input
// size (a stream keeps its size, so there is usually one; the last 8 sizes are kept).
class OneDnnConvolution {
public:
	struct Spec {
		torch::Tensor weight;	   // [O, C, kh, kw]: the model's own tensor, not a copy
		torch::Tensor scale, bias; // [O] float: the batch norm's scale (or 1), the folded bias
		// Of the activations, and of the weights as the primitive reads them: float, or
		// bfloat16 (the bias stays float).
		torch::ScalarType dtype = torch::kFloat;
		int64_t stride = 1, padding = 0;
		bool add = false;  // adds a tensor of the output's shape before the activation
		Activation activation = Activation::None;
		// Depthwise (MobileNetV3): as many groups as channels, in and out; else 1.
		int64_t groups = 1;
		// Winograd for a 3x3 convolution needs maps of this many positions (see plan_for). The
		// box head's maps are 7x7, but a thousand of them: over the batch it pays (0).
		int64_t winograd_min_positions = 1024;
		// And this many input and output channels (see plan_for).
		int64_t winograd_min_channels = 128;
		// In a bf16 model, whether the convolution takes Winograd in float (see plan_for): for
		// chains of them, which hand on float and convert only at their ends.
		bool float_winograd_in_bf16 = false;
		// 8 bits (OneDnnPlan::quantized_names): the convolution's name in the state dict,
		// whether its input comes out of a ReLU (then unsigned: all 8 bits for the
		// magnitude), and, in an 8-bit plan, its input's range (the input is quantized by
		// range / 255 or / 127; larger values saturate).
		std::string name;
		bool unsigned_input = false;
		float int8_range = 0;
	};

	OneDnnConvolution(Spec spec, std::shared_ptr<OneDnnWorkspace> workspace)
		: spec_(std::move(spec)), workspace_(std::move(workspace))
	{
		if (spec_.int8_range > 0) {
			TORCH_CHECK(spec_.dtype == torch::kFloat, "oneDNN convolution: 8 bits from float weights only");
			TORCH_CHECK(spec_.groups == 1, "oneDNN convolution: 8 bits for ungrouped convolutions only");
			int8_ = Int8Scales::of(folded_weight(), spec_.bias, spec_.int8_range, spec_.unsigned_input);
		}
	}

	const Spec &spec() const { return spec_; }
	RangeObserver &observer() { return observer_; }

	// x: [N, C, H, W] of the spec's dtype, channels-last (or planar: the batch into the first convolution);
	// addend (when the spec adds): the output's shape, channels-last. Returns a channels-last
	// tensor.
	torch::Tensor operator()(const torch::Tensor &x, const torch::Tensor &addend = {})
	{
		return run(x, addend, nullptr, nullptr);
	}

	// For chains of convolutions (OneDnnPlan::chain): the layouts the primitive for this input
	// reads and writes where they are its own rather than the tensors' (Winograd's blocked
	// ones; else empty), and the output's height and width.
	struct Layouts {
		memory::desc src, dst;
		int64_t out_height = 0, out_width = 0;
	};
	Layouts layouts(int64_t batch, int64_t height, int64_t width, bool planar)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		const Plan &plan = plan_for(batch, height, width, planar);
		return {plan.reorder_src ? plan.src_desc : memory::desc(),
			plan.reorder_dst ? plan.dst_desc : memory::desc(), plan.out_height, plan.out_width};
	}

	// One link of a chain (no addend). The input is x, or, when blocked_src is given, that
	// memory in the primitive's own source layout (x, then a meta tensor, gives only the
	// shape). The output goes to blocked_dst in the primitive's own destination layout when
	// given (a meta tensor of the output's shape is returned), else to a channels-last tensor.
	torch::Tensor link(const torch::Tensor &x, const memory *blocked_src, const memory *blocked_dst)
	{
		TORCH_CHECK(!spec_.add, "oneDNN convolution: a convolution with an addend in a chain");
		return run(x, {}, blocked_src, blocked_dst);
	}
	torch::ScalarType dtype() const { return spec_.dtype; }
	// oneDNN's names of the implementations chosen, one per input size planned.
	std::vector<std::string> implementations()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return plans_.implementation_names();
	}

private:
	torch::Tensor run(const torch::Tensor &x, const torch::Tensor &addend, const memory *blocked_src,
			  const memory *blocked_dst)
	{
		const bool planar = blocked_src == nullptr && is_planar(x);
		TORCH_CHECK(blocked_src != nullptr || planar || x.is_contiguous(at::MemoryFormat::ChannelsLast),
			    "oneDNN convolution input neither planar nor channels-last");
		TORCH_CHECK(spec_.add == addend.defined(), "oneDNN convolution: addend given or missing");
		TORCH_CHECK(x.scalar_type() == spec_.dtype && (!addend.defined() || addend.scalar_type() == spec_.dtype),
			    "oneDNN convolution: input of type ", x.scalar_type(), " for a convolution in ", spec_.dtype);
		// Seen by LibTorch's operator observers (profilers, frcnn-bench's FLOP count) as
		// (input, weight, stride, padding).
		RECORD_FUNCTION("frcnn::onednn_convolution",
				std::vector<c10::IValue>({x, spec_.weight, spec_.stride, spec_.padding}));
		if (blocked_src == nullptr)
			observer_.observe(x);
		else
			TORCH_CHECK(!observer_.observing(), "oneDNN convolution: a chained input while observing");
		std::lock_guard<std::mutex> lock(mutex_);
		Plan &plan = plan_for(x.size(0), x.size(2), x.size(3), planar);
		TORCH_CHECK(blocked_src == nullptr || (plan.reorder_src && blocked_src->get_desc() == plan.src_desc),
			    "oneDNN convolution: a chained input in another layout than the primitive's");
		TORCH_CHECK(blocked_dst == nullptr || (plan.reorder_dst && blocked_dst->get_desc() == plan.dst_desc),
			    "oneDNN convolution: a chained output in another layout than the primitive's");
		const std::vector<int64_t> out_shape{x.size(0), spec_.weight.size(0), plan.out_height, plan.out_width};
		auto out = blocked_dst ? torch::empty(out_shape, torch::TensorOptions(spec_.dtype).device(torch::kMeta))
				       : workspace_->outputs->channels_last(out_shape, spec_.dtype);
		if (spec_.add)
			TORCH_CHECK(addend.sizes() == out.sizes() &&
					    addend.is_contiguous(at::MemoryFormat::ChannelsLast),
				    "oneDNN convolution: addend of another shape or layout");
		dnnl::stream stream(cpu_engine());
		std::unordered_map<int, memory> args{{DNNL_ARG_WEIGHTS, plan.weights}, {DNNL_ARG_BIAS, bias_memory()}};
		auto workspace = workspace_->lease(plan.workspace_bytes);
		void *scratchpad = workspace.data;
		// Where the primitive wants other layouts than the tensors' (Winograd's blocked ones,
		// a blocked output for planar input), the data goes through reorders, unless a chain
		// hands it over in that layout; an addend is then put in the output first and summed
		// into it.
		memory src;
		if (blocked_src) {
			src = *blocked_src;
		} else {
			src = wrap(x, planar);
			if (plan.reorder_src) {
				memory reordered(plan.src_desc, cpu_engine(), workspace.data + plan.src_offset);
				plan.to_blocked_src.run(stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, reordered}}, scratchpad);
				src = reordered;
			}
		}
		memory dst, conv_dst;
		if (blocked_dst) {
			conv_dst = *blocked_dst;
		} else {
			dst = conv_dst = wrap(out);
			if (plan.reorder_dst)
				conv_dst = memory(plan.dst_desc, cpu_engine(), workspace.data + plan.dst_offset);
		}
		if (spec_.add && plan.sum_addend) {
			if (plan.reorder_dst)
				plan.to_blocked_dst.run(stream, {{DNNL_ARG_FROM, wrap(addend)}, {DNNL_ARG_TO, conv_dst}},
							scratchpad);
			else
				out.copy_(addend);
		} else if (spec_.add) {
			args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = wrap(addend);
		}
		args[DNNL_ARG_SRC] = src;
		args[DNNL_ARG_DST] = conv_dst;
		plan.convolution.run(stream, args, scratchpad);
		if (!blocked_dst && plan.reorder_dst)
			plan.from_blocked_dst.run(stream, {{DNNL_ARG_FROM, conv_dst}, {DNNL_ARG_TO, dst}}, scratchpad);
		return out;
	}

	struct Plan {
		Step convolution;
		memory weights; // reordered for the primitive
		// Whether input and output go through a layout of the primitive's (src_desc, dst_desc).
		bool reorder_src = false, reorder_dst = false;
		// Whether the addend is summed into the output (else a binary post-op reads it).
		bool sum_addend = false;
		memory::desc src_desc, dst_desc;
		Step to_blocked_src, to_blocked_dst, from_blocked_dst;
		// Workspace: scratch memory first, then the reordered input and output.
		size_t workspace_bytes = 0, src_offset = 0, dst_offset = 0;
		int64_t out_height = 0, out_width = 0;
		std::string implementation;
	};

	memory bias_memory()
	{
		const auto &bias = spec_.int8_range > 0 ? int8_.bias : spec_.bias;
		return memory(memory::desc({bias.size(0)}, kF32, Tag::x), cpu_engine(), bias.data_ptr<float>());
	}

	// The weights with the batch norm's scale folded in, float.
	torch::Tensor folded_weight() const
	{
		torch::NoGradGuard no_grad;
		return (spec_.weight.to(torch::kFloat) * spec_.scale.reshape({-1, 1, 1, 1})).contiguous();
	}

	// oneDNN's dimensions of the weights: [O, I, kh, kw], or, grouped, [G, O/G, I/G, kh, kw]
	// (the same memory as LibTorch's [O, I/G, kh, kw]).
	memory::dims weights_dims() const
	{
		const auto &w = spec_.weight;
		if (spec_.groups == 1)
			return {w.size(0), w.size(1), w.size(2), w.size(3)};
		return {spec_.groups, w.size(0) / spec_.groups, w.size(1), w.size(2), w.size(3)};
	}

	Plan &plan_for(int64_t batch, int64_t height, int64_t width, bool planar)
	{
		const auto key = std::make_tuple(batch, height, width, planar);
		if (Plan *known = plans_.find(key))
			return *known;

		const auto &w = spec_.weight;
		const int64_t groups = spec_.groups;
		const int64_t out_channels = w.size(0), in_channels = w.size(1) * groups, kh = w.size(2), kw = w.size(3);
		const int64_t s = spec_.stride, p = spec_.padding;
		Plan plan;
		plan.out_height = (height + 2 * p - kh) / s + 1;
		plan.out_width = (width + 2 * p - kw) / s + 1;
		const memory::dims src_dims{batch, in_channels, height, width};
		const memory::dims weight_dims = weights_dims();
		const memory::dims dst_dims{batch, out_channels, plan.out_height, plan.out_width};
		const memory::desc bias_desc({out_channels}, kF32, Tag::x);
		const auto type = data_type_of(spec_.dtype);

		const Tag input_layout = planar ? Tag::nchw : Tag::nhwc;
		// 8 bits: the input quantized into the primitive's layout by the reorder in (which
		// scales it by 1 / input scale), the weights per output channel; the primitive adds
		// the bias and scales its 32-bit sums back to float (oneDNN 2 adds the bias before
		// the output scale, hence the bias divided by it), then adds and rectifies in float.
		// Direct convolutions only: oneDNN has no 8-bit Winograd for these.
		const bool int8 = spec_.int8_range > 0;
		// conv_type: the data type the primitive computes in (the tensors' own, or float for
		// Winograd in a bf16 model, see below); 8 bits read 8-bit input and weights and write
		// float.
		auto make = [&](dnnl::algorithm algorithm, Tag src_layout, Tag dst_layout, bool sum_addend,
				memory::data_type conv_type) {
			const auto src_type = int8 ? quantized_type(spec_.unsigned_input) : conv_type;
			const auto weight_type = int8 ? memory::data_type::s8 : conv_type;
			const auto dst_type = int8 ? kF32 : conv_type;
			dnnl::post_ops ops;
			if (spec_.add) {
				if (sum_addend)
					ops.append_sum(1.0f);
				else
					ops.append_binary(dnnl::algorithm::binary_add, memory::desc(dst_dims, dst_type, Tag::nhwc));
			}
			if (spec_.activation == Activation::ReLU)
				ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
			else if (spec_.activation == Activation::Hardswish) // x * relu6(x + 3) / 6, as LibTorch's
				ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_hardswish, 0.0f, 0.0f);
			dnnl::primitive_attr attr = user_scratchpad();
			attr.set_post_ops(ops);
			if (int8)
				attr.set_output_scales(1 << 1, int8_.output);
			dnnl::convolution_forward::desc desc(
				dnnl::prop_kind::forward_inference, algorithm, memory::desc(src_dims, src_type, src_layout),
				memory::desc(weight_dims, weight_type, Tag::any), bias_desc,
				memory::desc(dst_dims, dst_type, dst_layout), {s, s}, {p, p}, {p, p});
			return dnnl::convolution_forward::primitive_desc(desc, attr, cpu_engine());
		};

		// Candidates, best first. Winograd F(4x4, 3x3) does 4 times fewer multiplications for a
		// 3x3 stride-1 convolution; oneDNN has it for AVX-512 and channel counts that are
		// multiples of 16 (elsewhere creating it fails). On small maps (ResNet's layer4) it
		// gains little and its transformed weights take 4 times the memory. It rounds
		// differently from the direct algorithm, and the trunk's later layers amplify that, so
		// the trunk keeps it for 128 channels and more (see the Spec's users). Then the direct
		// algorithm on the tensors' own layouts, unless oneDNN has only its reference code for
		// them (planar input to a channels-last output): then on layouts of its choosing, with
		// reorders. oneDNN's Winograd is for float only. A bf16 model runs it in float where the
		// spec says so, its input converted by the reorder into Winograd's blocked layout and
		// its output by the reorder out of it, which run anyway: for chains of Winograd
		// convolutions (the v2 model's box head and RPN head), which hand on float between
		// them. On a CPU with AVX-512 BF16 (no AMX) float Winograd took 0.72 times the time of
		// the direct bfloat16 kernel for the v2 box head's; for single convolutions (the trunk,
		// the FPN, a one-convolution RPN head) the conversions ate the gain or more.
		const bool winograd = !int8 && groups == 1 &&
				      (spec_.dtype == torch::kFloat || spec_.float_winograd_in_bf16) &&
				      kh == 3 && kw == 3 && s == 1 && p == 1 &&
				      plan.out_height * plan.out_width >= spec_.winograd_min_positions &&
				      in_channels >= spec_.winograd_min_channels &&
				      out_channels >= spec_.winograd_min_channels;
		std::optional<dnnl::convolution_forward::primitive_desc> pd;
		if (winograd) {
			try {
				pd = make(dnnl::algorithm::convolution_winograd, Tag::any, Tag::any, /*sum_addend=*/true, kF32);
				plan.sum_addend = true;
			} catch (const dnnl::error &) {
			}
		}
		if (!pd) {
			pd = make(dnnl::algorithm::convolution_direct, input_layout, Tag::nhwc, /*sum_addend=*/false, type);
			if (std::string(pd->impl_info_str()).rfind("ref", 0) == 0) {
				pd = make(dnnl::algorithm::convolution_direct, Tag::any, Tag::any, /*sum_addend=*/true, type);
				plan.sum_addend = true;
			}
		}

		auto &engine = cpu_engine();
		plan.convolution = Step::of<dnnl::convolution_forward>(*pd);
		plan.implementation = pd->impl_info_str();
		plan.weights = weights_for(pd->weights_desc());
		const memory::desc src_given(src_dims, type, input_layout), dst_given(dst_dims, type, Tag::nhwc);
		const auto attr = user_scratchpad();
		plan.src_desc = pd->src_desc();
		plan.dst_desc = pd->dst_desc();
		plan.reorder_src = plan.src_desc != src_given;
		plan.reorder_dst = plan.dst_desc != dst_given;
		if (int8) {
			// Quantizes: round(x / input scale), saturated to 8 bits.
			auto quantize = user_scratchpad();
			quantize.set_output_scales(0, {1.0f / int8_.input});
			plan.to_blocked_src = Step::of<dnnl::reorder>(
				dnnl::reorder::primitive_desc(engine, src_given, engine, plan.src_desc, quantize));
		} else if (plan.reorder_src) {
			plan.to_blocked_src = Step::of<dnnl::reorder>(
				dnnl::reorder::primitive_desc(engine, src_given, engine, plan.src_desc, attr));
		}
		if (plan.reorder_dst) {
			plan.to_blocked_dst = Step::of<dnnl::reorder>(
				dnnl::reorder::primitive_desc(engine, dst_given, engine, plan.dst_desc, attr));
			plan.from_blocked_dst = Step::of<dnnl::reorder>(
				dnnl::reorder::primitive_desc(engine, plan.dst_desc, engine, dst_given, attr));
		}
		size_t scratchpad = plan.convolution.scratchpad_bytes;
		for (const auto *step : {&plan.to_blocked_src, &plan.to_blocked_dst, &plan.from_blocked_dst})
			scratchpad = std::max(scratchpad, step->scratchpad_bytes);
		plan.src_offset = aligned(scratchpad);
		plan.dst_offset = plan.src_offset + (plan.reorder_src ? aligned(plan.src_desc.get_size()) : 0);
		plan.workspace_bytes = plan.dst_offset + (plan.reorder_dst ? aligned(plan.dst_desc.get_size()) : 0);
		return plans_.add(key, std::move(plan));
	}

	Spec spec_;
	std::shared_ptr<OneDnnWorkspace> workspace_;
	using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool>; // batch, height, width, planar
	RecentPlans<PlanKey, Plan> plans_;

	// The weights, batch norm folded in, in the layout and type a primitive wants (folded in
	// float, then rounded once by the reorder for bfloat16): shared by the plans that want the
	// same one (usually all sizes: the layout depends on the channels, not on the frame size),
	// and kept only that way (the folded float copy is dropped).
	memory weights_for(const memory::desc &desc)
	{
		for (const auto &[known, weights] : weights_)
			if (known == desc)
				return weights;
		const auto plain = memory::desc(weights_dims(), kF32, spec_.groups > 1 ? Tag::goihw : Tag::oihw);
		const auto weights = reordered_weights(plain, folded_weight(), desc,
						       spec_.int8_range > 0 ? &int8_.weight_quantizers : nullptr);
		constexpr size_t kMaxLayouts = 4;
		if (weights_.size() >= kMaxLayouts)
			weights_.erase(weights_.begin());
		weights_.emplace_back(desc, weights);
		return weights;
	}
	std::vector<std::pair<memory::desc, memory>> weights_;
	Int8Scales int8_; // with an int8_range
	RangeObserver observer_;
	std::mutex mutex_;
};

// A linear layer of the box head with its ReLU, on rows [R, K] of float. In 8 bits (an
// int8_range): the rows quantized by the reorder in, the weights per output feature, oneDNN's
// inner product summing in 32 bits and scaling back to float (the bias divided by the output
// scale, as for the convolutions); primitives per row count, the last 8 kept. In float: one
// oneDNN matmul for every row count (the rows a runtime dimension), reading the module's weights
// [N, K] where they lie as the transposed [K, N] it multiplies by, the bias and the ReLU fused:
// about twice the speed of LibTorch's linear layer on OpenBLAS at the box head's sizes (fc6 of
// 1000 regions: 12544 by 1024), the sums in another order (within float rounding of it).
class OneDnnLinear {
public:
	struct Spec {
		torch::Tensor weight, bias; // the module's own [N, K] and [N]
		std::string name;
		bool unsigned_input = false;
		float int8_range = 0;
	};

	OneDnnLinear(Spec spec, std::shared_ptr<OneDnnWorkspace> workspace)
		: spec_(std::move(spec)), workspace_(std::move(workspace))
	{
		if (spec_.int8_range > 0)
			int8_ = Int8Scales::of(spec_.weight, spec_.bias, spec_.int8_range, spec_.unsigned_input);
	}

	const Spec &spec() const { return spec_; }
	RangeObserver &observer() { return observer_; }
	std::vector<std::string> implementations()
	{
		std::lock_guard<std::mutex> lock(mutex_);
		return plans_.implementation_names();
	}

	torch::Tensor operator()(const torch::Tensor &rows)
	{
		TORCH_CHECK(rows.dim() == 2 && rows.scalar_type() == torch::kFloat && rows.size(1) == spec_.weight.size(1),
			    "oneDNN linear layer: rows of another shape or type");
		observer_.observe(rows);
		if (rows.size(0) == 0 || !(spec_.int8_range > 0 || float_weights()))
			return torch::relu(torch::linear(rows, spec_.weight, spec_.bias));
		if (spec_.int8_range <= 0)
			return float_product(rows);
		std::lock_guard<std::mutex> lock(mutex_);
		RECORD_FUNCTION("frcnn::onednn_linear", std::vector<c10::IValue>({rows, spec_.weight}));
		const auto x = rows.contiguous();
		const int64_t count = x.size(0), in_features = x.size(1), out_features = spec_.weight.size(0);
		Plan &plan = plan_for(count);
		auto out = torch::empty({count, out_features});
		auto workspace = workspace_->lease(plan.workspace_bytes);
		dnnl::stream stream(cpu_engine());
		memory given(memory::desc({count, in_features}, kF32, Tag::nc), cpu_engine(), x.data_ptr());
		memory quantized(plan.src_desc, cpu_engine(), workspace.data + plan.src_offset);
		plan.quantize.run(stream, {{DNNL_ARG_FROM, given}, {DNNL_ARG_TO, quantized}}, workspace.data);
		memory dst(memory::desc({count, out_features}, kF32, Tag::nc), cpu_engine(), out.data_ptr());
		memory bias(memory::desc({out_features}, kF32, Tag::x), cpu_engine(), int8_.bias.data_ptr());
		plan.product.run(stream,
				 {{DNNL_ARG_SRC, quantized}, {DNNL_ARG_WEIGHTS, plan.weights}, {DNNL_ARG_BIAS, bias},
				  {DNNL_ARG_DST, dst}},
				 workspace.data);
		return out;
	}

private:
	struct Plan {
		Step quantize, product;
		memory weights;
		memory::desc src_desc;
		size_t workspace_bytes = 0, src_offset = 0;
		std::string implementation;
	};

	// Whether the float product can read the module's weights and bias where they lie.
	bool float_weights() const
	{
		return spec_.weight.scalar_type() == torch::kFloat && spec_.weight.is_contiguous() &&
		       spec_.weight.dim() == 2 &&
		       (!spec_.bias.defined() || (spec_.bias.scalar_type() == torch::kFloat && spec_.bias.is_contiguous()));
	}

	torch::Tensor float_product(const torch::Tensor &rows)
	{
		std::lock_guard<std::mutex> lock(mutex_);
		RECORD_FUNCTION("frcnn::onednn_linear", std::vector<c10::IValue>({rows, spec_.weight}));
		const int64_t in_features = spec_.weight.size(1), out_features = spec_.weight.size(0);
		auto &engine = cpu_engine();
		const bool bias = spec_.bias.defined();
		if (!float_product_) {
			dnnl::post_ops ops;
			ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
			dnnl::primitive_attr attr;
			attr.set_post_ops(ops);
			const dnnl::matmul::desc desc(
				memory::desc({DNNL_RUNTIME_DIM_VAL, in_features}, kF32, Tag::ab),
				memory::desc({in_features, out_features}, kF32, Tag::ba),
				bias ? memory::desc({1, out_features}, kF32, Tag::ab) : memory::desc(),
				memory::desc({DNNL_RUNTIME_DIM_VAL, out_features}, kF32, Tag::ab));
			float_product_ = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine));
		}
		const auto x = rows.contiguous();
		const int64_t count = x.size(0);
		auto out = torch::empty({count, out_features});
		dnnl::stream stream(engine);
		std::unordered_map<int, memory> args{
			{DNNL_ARG_SRC, memory(memory::desc({count, in_features}, kF32, Tag::ab), engine, x.data_ptr())},
			{DNNL_ARG_WEIGHTS, memory(memory::desc({in_features, out_features}, kF32, Tag::ba), engine,
						  spec_.weight.data_ptr())},
			{DNNL_ARG_DST, memory(memory::desc({count, out_features}, kF32, Tag::ab), engine, out.data_ptr())}};
		if (bias)
			args[DNNL_ARG_BIAS] = memory(memory::desc({1, out_features}, kF32, Tag::ab), engine, spec_.bias.data_ptr());
		float_product_.execute(stream, args);
		stream.wait();
		return out;
	}

	Plan &plan_for(int64_t count)
	{
		if (Plan *known = plans_.find(count))
			return *known;
		auto &engine = cpu_engine();
		const int64_t in_features = spec_.weight.size(1), out_features = spec_.weight.size(0);
		const auto input_type = quantized_type(spec_.unsigned_input);
		dnnl::post_ops ops;
		ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
		dnnl::primitive_attr attr = user_scratchpad();
		attr.set_post_ops(ops);
		attr.set_output_scales(1 << 1, int8_.output);
		const dnnl::inner_product_forward::desc desc(
			dnnl::prop_kind::forward_inference, memory::desc({count, in_features}, input_type, Tag::nc),
			memory::desc({out_features, in_features}, memory::data_type::s8, Tag::any),
			memory::desc({out_features}, kF32, Tag::x), memory::desc({count, out_features}, kF32, Tag::nc));
		const dnnl::inner_product_forward::primitive_desc pd(desc, attr, engine);
		Plan plan;
		plan.product = Step::of<dnnl::inner_product_forward>(pd);
		plan.implementation = pd.impl_info_str();
		plan.src_desc = pd.src_desc();
		auto quantize = user_scratchpad();
		quantize.set_output_scales(0, {1.0f / int8_.input});
		plan.quantize = Step::of<dnnl::reorder>(dnnl::reorder::primitive_desc(
			engine, memory::desc({count, in_features}, kF32, Tag::nc), engine, plan.src_desc, quantize));
		plan.weights = weights_for(pd.weights_desc());
		plan.src_offset = aligned(std::max(plan.product.scratchpad_bytes, plan.quantize.scratchpad_bytes));
		plan.workspace_bytes = plan.src_offset + aligned(plan.src_desc.get_size());
		return plans_.add(count, std::move(plan));
	}

	// The weights in 8 bits in the primitive's layout, shared by the plans that want the same.
	memory weights_for(const memory::desc &desc)
	{
		for (const auto &[known, weights] : weights_)
			if (known == desc)
				return weights;
		const auto plain = spec_.weight.to(torch::kFloat).contiguous();
		const auto weights = reordered_weights(memory::desc({plain.size(0), plain.size(1)}, kF32, Tag::ab), plain,
						       desc, &int8_.weight_quantizers);
		weights_.emplace_back(desc, weights);
		return weights;
	}

	Spec spec_;
	std::shared_ptr<OneDnnWorkspace> workspace_;
	RecentPlans<int64_t, Plan> plans_; // by row count
	std::vector<std::pair<memory::desc, memory>> weights_;
	Int8Scales int8_; // with an int8_range
	dnnl::matmul float_product_; // without one, made at the first rows
	RangeObserver observer_;
	std::mutex mutex_;
};

struct OneDnnPlan::Block {
	std::unique_ptr<OneDnnConvolution> conv1, conv2, conv3, downsample;
};

struct OneDnnPlan::MobileLayer {
	std::unique_ptr<OneDnnConvolution> expand;  // 1x1, where the block expands its channels
	std::unique_ptr<OneDnnConvolution> spatial; // the depthwise kxk, or a plain layer's convolution
	SqueezeExcitationImpl *squeeze = nullptr;   // the model's own module
	std::unique_ptr<OneDnnConvolution> project; // 1x1, adding the block's input when residual
	bool residual = false;
	bool stage = false; // read by the FPN
};

namespace {

// A Conv2d and the FrozenBatchNorm2d after it as one convolution with a bias:
// w * scale per output channel, bias * scale + shift.
OneDnnConvolution::Spec folded(torch::nn::Conv2dImpl &conv, torch::nn::Module *norm,
			       std::vector<std::pair<torch::Tensor, int64_t>> &sources)
{
	torch::NoGradGuard no_grad;
	auto remember = [&](const torch::Tensor &t) {
		if (t.defined())
			sources.emplace_back(t, t._version());
	};
	OneDnnConvolution::Spec spec;
	const auto &o = conv.options;
	if (conv.weight.dim() != 4)
		throw Error("the oneDNN convolutions: unexpected weight shape");
	const auto kernel = o.kernel_size();
	// Ungrouped, or depthwise: one group per channel, in and out.
	const bool depthwise = o.groups() > 1 && o.groups() == conv.weight.size(0) && conv.weight.size(1) == 1;
	if ((o.groups() != 1 && !depthwise) || o.dilation()->at(0) != 1 || o.dilation()->at(1) != 1 ||
	    o.stride()->at(0) != o.stride()->at(1) || kernel->at(0) != kernel->at(1) || kernel->at(0) % 2 == 0)
		throw Error("the oneDNN convolutions support square, odd-sized, undilated, ungrouped or depthwise "
			    "convolutions only");
	spec.stride = o.stride()->at(0);
	spec.groups = o.groups();
	// Every convolution of these models pads by half its kernel (torchvision's ResNet, FPN
	// and RPN head), which keeps the output at input size / stride.
	spec.padding = kernel->at(0) / 2;
	remember(conv.weight);
	remember(conv.bias);
	const int64_t out_channels = conv.weight.size(0);
	auto scale = torch::ones({out_channels});
	auto bias = conv.bias.defined() ? conv.bias.to(torch::kCPU, torch::kFloat) : torch::zeros({out_channels});
	if (norm != nullptr) {
		torch::Tensor bn_scale, bn_shift;
		if (auto *frozen = norm->as<FrozenBatchNorm2dImpl>()) {
			for (const auto *t : {&frozen->weight, &frozen->bias, &frozen->running_mean, &frozen->running_var})
				remember(*t);
			std::tie(bn_scale, bn_shift) = frozen->scale_and_shift();
		} else if (auto *bn = norm->as<torch::nn::BatchNorm2dImpl>()) {
			// BatchNorm2d as it computes in eval mode (the plan serves eval mode only): with
			// its running statistics, which training updates (a new plan then).
			if (!bn->options.affine() || !bn->options.track_running_stats())
				throw Error("the oneDNN convolutions need batch norms with an affine part and running statistics");
			for (const auto *t : {&bn->weight, &bn->bias, &bn->running_mean, &bn->running_var})
				remember(*t);
			// In float, also for a bf16 model.
			const auto weight = bn->weight.to(torch::kFloat), running_var = bn->running_var.to(torch::kFloat);
			bn_scale = weight / (running_var + bn->options.eps()).sqrt();
			bn_shift = bn->bias.to(torch::kFloat) - bn->running_mean.to(torch::kFloat) * bn_scale;
		} else {
			throw Error("the oneDNN convolutions: a normalisation that is not a batch norm");
		}
		scale = bn_scale.reshape({-1}).to(torch::kCPU, torch::kFloat);
		bias = bias * scale + bn_shift.reshape({-1}).to(torch::kCPU, torch::kFloat);
	}
	spec.weight = conv.weight;
	spec.scale = scale.contiguous();
	spec.bias = bias.contiguous();
	return spec;
}

std::unique_ptr<OneDnnConvolution> make_convolution(OneDnnConvolution::Spec spec, bool add, Activation activation,
						    const std::shared_ptr<OneDnnWorkspace> &workspace)
{
	spec.add = add;
	spec.activation = activation;
	// The model's own dtype: float, or bfloat16 for a bf16 model (whose weights are already
	// rounded to it; folding a batch norm in rounds them once more).
	spec.dtype = spec.weight.scalar_type() == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat;
	return std::make_unique<OneDnnConvolution>(std::move(spec), workspace);
}

// A layer of OneDnnPlan::quantized_names() (a convolution's or linear layer's spec) with its name,
// whether its input is unsigned, and in an 8-bit plan its input's range.
template <typename Spec>
Spec quantizable(Spec spec, std::string name, bool unsigned_input, const Int8Ranges *int8_ranges)
{
	spec.name = std::move(name);
	spec.unsigned_input = unsigned_input;
	if (int8_ranges != nullptr) {
		const auto found = int8_ranges->find(spec.name);
		if (found == int8_ranges->end())
			throw Error("the 8-bit calibration has no range for " + spec.name + " (made for another model?)");
		if (!std::isfinite(found->second) || found->second < 0)
			throw Error("the 8-bit calibration's range for " + spec.name + " is not a finite number >= 0");
		// An input that was zero throughout: any scale will do.
		spec.int8_range = found->second > 0 ? found->second : 1.0f;
		if (spec.weight.scalar_type() != torch::kFloat)
			throw Error("8-bit layers are made from float weights");
	}
	return spec;
}

torch::nn::Conv2dImpl &conv_of(torch::nn::ModuleList &list, size_t i)
{
	auto *seq = list[i]->as<torch::nn::Sequential>();
	auto *conv = seq ? seq->ptr(0)->as<torch::nn::Conv2dImpl>() : nullptr;
	if (conv == nullptr)
		throw Error("the oneDNN convolutions: unexpected module layout");
	return *conv;
}

} // namespace

OneDnnPlan::OneDnnPlan(BackboneImpl &backbone, RPNHeadImpl &rpn_head, ConvFCHeadImpl *box_head,
		       const Int8Ranges *int8_ranges, TwoMLPHeadImpl *mlp_head)
	: workspace_(std::make_shared<OneDnnWorkspace>())
{
	reporting_errors([&] { build(backbone, rpn_head, box_head, int8_ranges, mlp_head); });
}

void OneDnnPlan::build(BackboneImpl &backbone, RPNHeadImpl &rpn_head, ConvFCHeadImpl *box_head,
		       const Int8Ranges *int8_ranges, TwoMLPHeadImpl *mlp_head)
{
	if (!backbone.resnet && !backbone.mobilenet)
		throw Error("the oneDNN convolutions cover ResNet and MobileNetV3 backbones only");
	int8_ = int8_ranges != nullptr;
	auto quantized = [&](auto spec, std::string name, bool unsigned_input) {
		return quantizable(std::move(spec), std::move(name), unsigned_input, int8_ranges);
	};
	// The box head's linear layers, each with its ReLU.
	auto linear = [&](torch::nn::Linear &layer, const std::string &name, bool unsigned_input) {
		sources_.emplace_back(layer->weight, layer->weight._version());
		if (layer->bias.defined())
			sources_.emplace_back(layer->bias, layer->bias._version());
		OneDnnLinear::Spec spec;
		spec.weight = layer->weight;
		spec.bias = layer->bias;
		linears_.push_back(std::make_unique<OneDnnLinear>(quantized(spec, name, unsigned_input), workspace_));
	};
	if (backbone.resnet)
		build_resnet(*backbone.resnet, int8_ranges);
	else
		build_mobilenet(*backbone.mobilenet);
	dtype_ = (stem_ ? stem_ : mobile_.front().spatial)->dtype();
	const bool stages_rectified = !backbone.resnet.is_empty();
	auto &fpn = *backbone.fpn;
	// Sequential(conv) or, in the v2 model, Sequential(conv, BatchNorm2d).
	auto norm_of = [](torch::nn::ModuleList &list, size_t i) -> torch::nn::Module * {
		auto *seq = list[i]->as<torch::nn::Sequential>();
		if (seq->size() > 2)
			throw Error("the oneDNN convolutions: unexpected module layout");
		return seq->size() == 2 ? seq->ptr(1).get() : nullptr;
	};
	// The FPN's output convolutions and the RPN head's take Winograd from 64 channels on: on
	// the tiny model's maps at stride 4 it runs them in less than half the time of the direct
	// algorithm, its reorders included (the other models' FPN has 256 channels).
	for (size_t i = 0; i < fpn.inner_blocks->size(); i++) {
		// Every lateral but the coarsest adds the top-down path.
		const bool coarsest = i + 1 == fpn.inner_blocks->size();
		const auto index = std::to_string(i);
		// The laterals read the trunk's stages (after a ReLU in a ResNet, signed in MobileNetV3);
		// the output convolutions sums of laterals (signed).
		fpn_inner_.push_back(make_convolution(
			quantized(folded(conv_of(fpn.inner_blocks, i), norm_of(fpn.inner_blocks, i), sources_),
				  "backbone.fpn.inner_blocks." + index + ".0", stages_rectified),
			!coarsest, Activation::None, workspace_));
		auto layer = quantized(folded(conv_of(fpn.layer_blocks, i), norm_of(fpn.layer_blocks, i), sources_),
				       "backbone.fpn.layer_blocks." + index + ".0", false);
		layer.winograd_min_channels = kWinogradMinChannelsAfterTrunk;
		fpn_layer_.push_back(make_convolution(std::move(layer), false, Activation::None, workspace_));
	}
	// Sequential(conv, ReLU): no normalisation in either model's RPN head.
	for (size_t i = 0; i < rpn_head.conv->size(); i++) {
		// The first reads the FPN's maps (signed), a second (v2) the first's ReLU.
		auto conv = quantized(folded(conv_of(rpn_head.conv, i), nullptr, sources_),
				      "rpn.head.conv." + std::to_string(i) + ".0", i > 0);
		conv.winograd_min_channels = kWinogradMinChannelsAfterTrunk;
		conv.float_winograd_in_bf16 = rpn_head.conv->size() > 1; // a chain (the v2 model's)
		rpn_conv_.push_back(make_convolution(std::move(conv), false, Activation::ReLU, workspace_));
	}
	rpn_cls_ = make_convolution(folded(*rpn_head.cls_logits, nullptr, sources_), false, Activation::None, workspace_);
	rpn_bbox_ = make_convolution(folded(*rpn_head.bbox_pred, nullptr, sources_), false, Activation::None, workspace_);
	if (box_head != nullptr) {
		for (size_t i = 0; i < box_head->convs.size(); i++) {
			auto &c = box_head->convs[i];
			if (c->activation != Activation::ReLU)
				throw Error("the oneDNN convolutions: a box head convolution without ReLU");
			// The first reads the pooled regions (signed), the others a ReLU.
			auto spec = quantized(folded(*c->conv, c->norm.is_empty() ? nullptr : c->norm.ptr().get(), sources_),
					      "roi_heads.box_head." + std::to_string(i) + ".0", i > 0);
			spec.winograd_min_positions = 0;
			spec.float_winograd_in_bf16 = true; // a chain of four
			box_head_.push_back(make_convolution(std::move(spec), false, Activation::ReLU, workspace_));
		}
		// After the convolutions' ReLU; its index follows the parameter-free Flatten.
		linear(box_head->fc, "roi_heads.box_head." + std::to_string(box_head->convs.size() + 1), true);
	} else if (mlp_head != nullptr) {
		// fc6 reads the pooled regions of the FPN's maps (signed), fc7 fc6's ReLU.
		linear(mlp_head->fc6, "roi_heads.box_head.fc6", false);
		linear(mlp_head->fc7, "roi_heads.box_head.fc7", true);
	}
}

void OneDnnPlan::build_resnet(ResNetBodyImpl &body, const Int8Ranges *int8_ranges)
{
	stem_ = make_convolution(folded(*body.conv1, body.bn1.ptr().get(), sources_), false, Activation::ReLU,
				 workspace_);
	for (size_t l = 0; l < body.layers.size(); l++) {
		auto &layer = body.layers[l];
		std::vector<Block> blocks;
		for (size_t i = 0; i < layer->size(); i++) {
			auto *b = layer->ptr(i)->as<ResNetBlockImpl>();
			if (b == nullptr)
				throw Error("the oneDNN convolutions: unexpected module layout");
			Block block;
			const std::string prefix =
				"backbone.body.layer" + std::to_string(l + 1) + "." + std::to_string(i) + ".";
			auto trunk = [&](torch::nn::Conv2dImpl &conv, torch::nn::Module *norm, const std::string &name) {
				// Every input in the trunk comes out of a ReLU (or the max pool after one).
				return quantizable(folded(conv, norm, sources_), prefix + name, true, int8_ranges);
			};
			// Bottleneck: relu(bn1(conv1)), relu(bn2(conv2)), relu(bn3(conv3) + identity);
			// BasicBlock: relu(bn1(conv1)), relu(bn2(conv2) + identity).
			block.conv1 = make_convolution(trunk(*b->conv1, b->bn1.ptr().get(), "conv1"), false,
						       Activation::ReLU, workspace_);
			block.conv2 = make_convolution(trunk(*b->conv2, b->bn2.ptr().get(), "conv2"), !b->bottleneck,
						       Activation::ReLU, workspace_);
			if (b->bottleneck)
				block.conv3 = make_convolution(trunk(*b->conv3, b->bn3.ptr().get(), "conv3"), true,
							       Activation::ReLU, workspace_);
			if (b->downsample) {
				auto *conv = b->downsample->ptr(0)->as<torch::nn::Conv2dImpl>();
				if (conv == nullptr || b->downsample->size() != 2)
					throw Error("the oneDNN convolutions: unexpected module layout");
				block.downsample = make_convolution(trunk(*conv, b->downsample->ptr(1).get(), "downsample.0"),
								    false, Activation::None, workspace_);
			}
			blocks.push_back(std::move(block));
		}
		layers_.push_back(std::move(blocks));
	}
}

void OneDnnPlan::build_mobilenet(MobileNetV3BodyImpl &body)
{
	// MobileNetV3's features: a convolution with its batch norm and activation (the first
	// and the last), else an inverted residual block: [1x1 expansion], depthwise kxk,
	// [squeeze-and-excitation], 1x1 projection (+ the block's input where it keeps its
	// size and channels).
	auto &features = body.features;
	const auto returned = body.returned_indices();
	auto convolution = [&](ConvNormActImpl &c, bool add) {
		return make_convolution(folded(*c.conv, c.norm.is_empty() ? nullptr : c.norm.ptr().get(), sources_),
					add, c.activation, workspace_);
	};
	for (size_t i = 0; i < features.size(); i++) {
		MobileLayer layer;
		layer.stage = std::find(returned.begin(), returned.end(), i) != returned.end();
		const auto module = features[i].ptr();
		if (auto *c = module->as<ConvNormActImpl>()) {
			layer.spatial = convolution(*c, false);
		} else if (auto *block = module->as<InvertedResidualImpl>()) {
			layer.residual = block->residual;
			const size_t n = block->block->size();
			for (size_t k = 0; k < n; k++) {
				auto part = block->block->ptr(k);
				if (auto *se = part->as<SqueezeExcitationImpl>()) {
					layer.squeeze = se;
				} else if (auto *c = part->as<ConvNormActImpl>()) {
					if (k + 1 == n)
						layer.project = convolution(*c, block->residual);
					else if (c->conv->options.groups() > 1)
						layer.spatial = convolution(*c, false);
					else
						layer.expand = convolution(*c, false);
				} else {
					throw Error("the oneDNN convolutions: unexpected module layout");
				}
			}
			if (!layer.spatial || !layer.project)
				throw Error("the oneDNN convolutions: unexpected module layout");
		} else {
			throw Error("the oneDNN convolutions: unexpected module layout");
		}
		mobile_.push_back(std::move(layer));
	}
}

torch::Tensor OneDnnPlan::box_head_linear(size_t index, const torch::Tensor &rows)
{
	TORCH_CHECK(index < linears_.size(), "oneDNN plan: no box head linear layer ", index);
	return reporting_errors([&] {
		at::internal::lazy_init_num_threads();
		return (*linears_[index])(rows);
	});
}

OneDnnPlan::~OneDnnPlan() = default;

bool OneDnnPlan::accepts(const torch::Tensor &batch) const
{
	return batch.dim() == 4 && batch.device().is_cpu() && batch.scalar_type() == dtype_;
}

std::vector<OneDnnConvolution *> OneDnnPlan::quantized() const
{
	std::vector<OneDnnConvolution *> all;
	for (const auto &layer : layers_)
		for (const auto &block : layer)
			for (const auto *conv : {&block.conv1, &block.conv2, &block.conv3, &block.downsample})
				if (*conv)
					all.push_back(conv->get());
	for (const auto *list : {&fpn_inner_, &fpn_layer_, &rpn_conv_, &box_head_})
		for (const auto &conv : *list)
			all.push_back(conv.get());
	return all;
}

std::vector<std::string> OneDnnPlan::quantized_names() const
{
	std::vector<std::string> names;
	for (auto *conv : quantized())
		names.push_back(conv->spec().name);
	for (const auto &layer : linears_)
		names.push_back(layer->spec().name);
	return names;
}

void OneDnnPlan::set_observing(bool observing)
{
	if (observing && int8_)
		throw Error("an 8-bit plan does not observe ranges: they come from a float one");
	std::lock_guard<std::mutex> lock(chain_mutex_);
	observing_ = observing;
	for (auto *conv : quantized())
		conv->observer().set_observing(observing);
	for (auto &layer : linears_)
		layer->observer().set_observing(observing);
}

Int8Ranges OneDnnPlan::observed_ranges() const
{
	Int8Ranges ranges;
	for (auto *conv : quantized())
		ranges[conv->spec().name] = conv->observer().range();
	for (const auto &layer : linears_)
		ranges[layer->spec().name] = layer->observer().range();
	return ranges;
}

std::vector<OneDnnConvolution *> OneDnnPlan::convolutions() const
{
	std::vector<OneDnnConvolution *> all{stem_.get(), rpn_cls_.get(), rpn_bbox_.get()};
	for (const auto &layer : layers_)
		for (const auto &block : layer)
			for (const auto *conv : {&block.conv1, &block.conv2, &block.conv3, &block.downsample})
				all.push_back(conv->get());
	for (const auto &layer : mobile_)
		for (const auto *conv : {&layer.expand, &layer.spatial, &layer.project})
			all.push_back(conv->get());
	for (const auto *list : {&fpn_inner_, &fpn_layer_, &rpn_conv_, &box_head_})
		for (const auto &conv : *list)
			all.push_back(conv.get());
	all.erase(std::remove(all.begin(), all.end(), nullptr), all.end());
	return all;
}

std::map<std::string, int> OneDnnPlan::implementations() const
{
	std::map<std::string, int> count;
	for (auto *conv : convolutions())
		for (const auto &name : conv->implementations())
			count[name]++;
	for (const auto &layer : linears_)
		for (const auto &name : layer->implementations())
			count[name]++;
	return count;
}

bool OneDnnPlan::current() const
{
	for (const auto &[tensor, version] : sources_)
		if (tensor._version() != version)
			return false;
	return true;
}

std::vector<torch::Tensor> OneDnnPlan::backbone(const torch::Tensor &batch)
{
	return reporting_errors([&] { return run_backbone(batch); });
}

OneDnnOutputMemory OneDnnPlan::output_memory() const
{
	return workspace_->outputs->memory();
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
OneDnnPlan::rpn_head(const std::vector<torch::Tensor> &features)
{
	return reporting_errors([&] { return run_rpn_head(features); });
}

std::vector<torch::Tensor> OneDnnPlan::run_backbone(const torch::Tensor &batch)
{
	workspace_->outputs->next_batch();
	// LibTorch applies its thread count to each thread that runs an operator; oneDNN runs on
	// the OpenMP threads of the calling thread.
	at::internal::lazy_init_num_threads();
	const auto input = batch.is_contiguous(at::MemoryFormat::ChannelsLast) ? batch : batch.contiguous();
	return run_fpn(stem_ ? run_resnet(input) : run_mobilenet(input));
}

std::vector<torch::Tensor> OneDnnPlan::run_resnet(const torch::Tensor &batch)
{
	auto y = (*stem_)(batch);
	y = F::max_pool2d(y, F::MaxPool2dFuncOptions(3).stride(2).padding(1))
		    .contiguous(at::MemoryFormat::ChannelsLast);
	std::vector<torch::Tensor> stages;
	for (auto &layer : layers_) {
		for (auto &block : layer) {
			auto identity = block.downsample ? (*block.downsample)(y) : y;
			auto out = (*block.conv1)(y);
			if (block.conv3) {
				out = (*block.conv2)(out);
				y = (*block.conv3)(out, identity);
			} else {
				y = (*block.conv2)(out, identity);
			}
		}
		stages.push_back(y);
	}
	return stages;
}

std::vector<torch::Tensor> OneDnnPlan::run_mobilenet(const torch::Tensor &batch)
{
	std::vector<torch::Tensor> stages;
	auto y = batch;
	for (auto &layer : mobile_) {
		const auto input = y;
		if (layer.expand)
			y = (*layer.expand)(y);
		y = (*layer.spatial)(y);
		if (layer.squeeze)
			y = layer.squeeze->forward(y).contiguous(at::MemoryFormat::ChannelsLast);
		if (layer.project)
			y = layer.residual ? (*layer.project)(y, input) : (*layer.project)(y);
		if (layer.stage)
			stages.push_back(y);
	}
	return stages;
}

std::vector<torch::Tensor> OneDnnPlan::run_fpn(const std::vector<torch::Tensor> &stages)
{
	// FeaturePyramidNetwork: lateral 1x1 + nearest-upsampled coarser level, then a 3x3.
	const size_t n = stages.size();
	std::vector<torch::Tensor> results(n);
	auto last_inner = (*fpn_inner_[n - 1])(stages[n - 1]);
	results[n - 1] = (*fpn_layer_[n - 1])(last_inner);
	for (size_t i = n - 1; i-- > 0;) {
		const auto &stage = stages[i];
		auto top_down = F::interpolate(last_inner, F::InterpolateFuncOptions()
								   .size(std::vector<int64_t>{stage.size(2), stage.size(3)})
								   .mode(torch::kNearest))
					.contiguous(at::MemoryFormat::ChannelsLast);
		last_inner = (*fpn_inner_[i])(stage, top_down);
		results[i] = (*fpn_layer_[i])(last_inner);
	}
	results.push_back(F::max_pool2d(results.back(), F::MaxPool2dFuncOptions(1).stride(2).padding(0))
				  .contiguous(at::MemoryFormat::ChannelsLast));
	return results;
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
OneDnnPlan::run_rpn_head(const std::vector<torch::Tensor> &features)
{
	at::internal::lazy_init_num_threads();
	std::vector<torch::Tensor> logits, deltas;
	for (const auto &f : features) {
		auto t = chain(rpn_conv_, f.contiguous(at::MemoryFormat::ChannelsLast));
		logits.push_back((*rpn_cls_)(t));
		deltas.push_back((*rpn_bbox_)(t));
	}
	return {logits, deltas};
}

// Where one convolution's primitive writes the layout the next one's reads (Winograd's blocked
// layout, on large maps and on the box head's batches of regions), the data stays in it: two
// reorders fewer per pair (the v2 model's box head: 12 of 16 for a chunk of regions).
torch::Tensor OneDnnPlan::chain(std::vector<std::unique_ptr<OneDnnConvolution>> &convs, torch::Tensor x)
{
	const size_t n = convs.size();
	std::vector<bool> hand_on(n, false); // whether link k gives the next one its blocked output
	std::vector<OneDnnConvolution::Layouts> layouts;
	if (chaining_ && !observing_ && n > 1) {
		int64_t height = x.size(2), width = x.size(3);
		for (size_t k = 0; k < n; k++) {
			layouts.push_back(convs[k]->layouts(x.size(0), height, width, k == 0 && is_planar(x)));
			height = layouts.back().out_height;
			width = layouts.back().out_width;
		}
		for (size_t k = 0; k + 1 < n; k++)
			hand_on[k] = !layouts[k].dst.is_zero() && layouts[k].dst == layouts[k + 1].src;
	}
	if (std::find(hand_on.begin(), hand_on.end(), true) == hand_on.end()) {
		for (auto &conv : convs)
			x = (*conv)(x);
		return x;
	}
	std::lock_guard<std::mutex> lock(chain_mutex_);
	memory given, handed;
	int buffer = 0;
	for (size_t k = 0; k < n; k++) {
		if (hand_on[k])
			handed = memory(layouts[k].dst, cpu_engine(), chain_buffer(buffer, layouts[k].dst.get_size()));
		x = convs[k]->link(x, k > 0 && hand_on[k - 1] ? &given : nullptr, hand_on[k] ? &handed : nullptr);
		if (hand_on[k]) {
			given = handed;
			buffer ^= 1;
			handoffs_++;
		}
	}
	return x;
}

void *OneDnnPlan::chain_buffer(int index, size_t bytes)
{
	auto &b = chain_buffers_[index];
	if (!b.defined() || (size_t)b.numel() < bytes) {
		b = torch::Tensor();
		b = torch::empty({(int64_t)bytes}, torch::kByte);
	}
	return b.data_ptr();
}

torch::Tensor OneDnnPlan::box_head(const torch::Tensor &pooled)
{
	// In chunks of at most 512 regions: Winograd's blocked copies of a convolution's input and
	// output take 150 MB per 1000 regions, and a batch of 8 frames brings 8000. The last chunk
	// is padded with empty regions to a multiple of 64, so that a few sizes of primitives serve
	// every count of regions (the padding's outputs are dropped).
	constexpr int64_t kChunk = 512, kStep = 64;
	return reporting_errors([&] {
		at::internal::lazy_init_num_threads();
		const int64_t count = pooled.size(0);
		std::vector<torch::Tensor> outputs;
		for (int64_t start = 0; start < count; start += kChunk) {
			const int64_t size = std::min(kChunk, count - start);
			const int64_t padded = (size + kStep - 1) / kStep * kStep;
			auto y = pooled.narrow(0, start, size).contiguous();
			if (padded != size) {
				auto shape = y.sizes().vec();
				shape[0] = padded - size;
				y = torch::cat({y, torch::zeros(shape, y.options())}, 0);
			}
			y = chain(box_head_, y);
			outputs.push_back(y.narrow(0, 0, size));
		}
		return outputs.size() == 1 ? outputs.front() : torch::cat(outputs, 0);
	});
}

#else // !FRCNN_HAVE_ONEDNN

class OneDnnConvolution {};
class OneDnnWorkspace {};
struct OneDnnPlan::Block {};

class OneDnnLinear {};

OneDnnPlan::OneDnnPlan(BackboneImpl &, RPNHeadImpl &, ConvFCHeadImpl *, const Int8Ranges *, TwoMLPHeadImpl *)
{
	throw Error(onednn_unsupported_reason(ModelConfig{}));
}

OneDnnPlan::~OneDnnPlan() = default;

bool OneDnnPlan::accepts(const torch::Tensor &) const
{
	return false;
}

bool OneDnnPlan::current() const
{
	return false;
}

std::map<std::string, int> OneDnnPlan::implementations() const
{
	return {};
}

std::vector<std::string> OneDnnPlan::quantized_names() const
{
	return {};
}

void OneDnnPlan::set_observing(bool)
{
}

Int8Ranges OneDnnPlan::observed_ranges() const
{
	return {};
}

OneDnnOutputMemory OneDnnPlan::output_memory() const
{
	return {};
}

std::vector<torch::Tensor> OneDnnPlan::backbone(const torch::Tensor &)
{
	throw Error(onednn_unsupported_reason(ModelConfig{}));
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> OneDnnPlan::rpn_head(const std::vector<torch::Tensor> &)
{
	throw Error(onednn_unsupported_reason(ModelConfig{}));
}

torch::Tensor OneDnnPlan::box_head(const torch::Tensor &)
{
	throw Error(onednn_unsupported_reason(ModelConfig{}));
}

torch::Tensor OneDnnPlan::box_head_linear(size_t, const torch::Tensor &)
{
	throw Error(onednn_unsupported_reason(ModelConfig{}));
}

#endif

} // namespace frcnn::detail
