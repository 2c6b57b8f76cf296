// SPDX-License-Identifier: BSD-3-Clause
// The facade that the element and the tools use: raw frames in, plain detections out.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "frcnn/config.h"

namespace frcnn {

enum class PixelFormat {
	RGB, BGR,			     // 3 bytes per pixel
	RGBx, BGRx, xRGB, xBGR,		     // 4 bytes, one unused
	RGBA, BGRA, ARGB, ABGR,		     // 4 bytes, alpha ignored
	NV12,				     // Y plane + interleaved UV plane at half resolution
	I420,				     // Y, U, V planes, U and V at half resolution
	GRAY8,				     // 1 byte per pixel, full range: R = G = B = the byte
	NV21,				     // NV12 with V before U
	YV12,				     // I420 with the V plane before U: planes[1] V, planes[2] U
	Y42B,				     // Y, U, V planes, U and V at half width, full height (4:2:2)
	Y444,				     // Y, U, V planes, all at full resolution
	YUY2,				     // packed 4:2:2, 4 bytes per 2 pixels: Y0 U Y1 V
	UYVY,				     // packed 4:2:2: U Y0 V Y1
	YVYU,				     // packed 4:2:2: Y0 V Y1 U
	NV16,				     // Y plane + interleaved UV plane at half width, full height
	NV61,				     // NV16 with V before U
	NV24,				     // Y plane + interleaved UV plane at full resolution
	VYUY,				     // packed 4:2:2: V Y0 U Y1
	// 10- and 12-bit YUV (HEVC, VP9 and AV1 decoders), each sample in a little-endian 16-bit word:
	P010_10LE,			     // NV12 of 16-bit words, the sample in their top 10 bits
	I420_10LE,			     // I420 of 16-bit words, the sample in their low 10 bits
	I422_10LE,			     // Y42B of 16-bit words, the sample in their low 10 bits
	Y444_10LE,			     // Y444 of 16-bit words, the sample in their low 10 bits
	P012_LE,			     // NV12 of 16-bit words, the sample in their top 12 bits
	I420_12LE,			     // I420 of 16-bit words, the sample in their low 12 bits
	I422_12LE,			     // Y42B of 16-bit words, the sample in their low 12 bits
	Y444_12LE,			     // Y444 of 16-bit words, the sample in their low 12 bits
	Y210,				     // YUY2 of 16-bit words, the sample in their top 10 bits
	Y212_LE,			     // YUY2 of 16-bit words, the sample in their top 12 bits
	v210,				     // packed 4:2:2 in UYVY's order, 10-bit samples three to a
					     // little-endian 32-bit word (bits 0-9, 10-19, 20-29): 6 pixels
					     // in 16 bytes (SDI capture cards)
	AYUV,				     // packed 4:4:4, 4 bytes per pixel: A Y U V (alpha ignored)
	VUYA,				     // packed 4:4:4: V U Y A (VA-API's 8-bit 4:4:4)
	// 16-bit YUV (NVDEC's 12-bit 4:2:0 and 10- and 12-bit 4:4:4): each sample a whole
	// little-endian 16-bit word
	P016_LE,			     // NV12 of 16-bit samples
	Y444_16LE,			     // Y444 of 16-bit samples
	// Packed 4:4:4 with alpha (VA-API's 10- and 12-bit 4:4:4), alpha ignored:
	Y410,				     // one little-endian 32-bit word a pixel: U in bits 0-9, Y in
					     // 10-19, V in 20-29, alpha in 30-31
	Y412_LE,			     // U Y V A, 16-bit words, the sample in their top 12 bits
};

// The matrix by which a YUV frame's values stand for colours (GStreamer's colorimetry matrix):
// BT.601 for SD video and most cameras, BT.709 for HD video, BT.2020 for UHD.
enum class YuvMatrix { BT601, BT709, BT2020 };

// How a frame's signal stands for light (GStreamer's colorimetry transfer). SDR: as on an SDR
// display (BT.709, sRGB, BT.2020's SDR curves), read as it is. The HDR ones, PQ (SMPTE ST 2084:
// HDR10, Dolby Vision's base layer) and HLG (ARIB STD-B67: broadcast, phones), are mapped to the
// picture an SDR display would show, which is what the model was trained on: the light each
// signal stands for (PQ: absolute, up to 10000 cd/m2; HLG: on a 1000 cd/m2 display, its system
// gamma 1.2 applied to each colour channel), BT.2408's reference white (203 cd/m2) as SDR's white,
// highlights above 3/4 of it compressed smoothly towards white, each channel alike, then
// encoded for an SDR display (BT.1886, gamma 2.4). The colour primaries are another matter: see
// ColourPrimaries.
enum class TransferFunction { SDR, PQ, HLG };

// The colours a frame's red, green and blue stand for (GStreamer's colorimetry primaries).
// BT.709: HD video's and sRGB's, which the model was trained on, read as they are (so are the
// close primaries of SD video, BT.601's). The wider gamuts of BT.2020 (UHD and HDR video: HDR10,
// HLG broadcasts and phones) and Display P3 (SMPTE EG 432: P3 with D65 white, some cameras' and
// phones' video) are converted to BT.709's as an SDR display shows them: the SDR signals (after
// TransferFunction's mapping) to their light (BT.1886), the light by the 3x3 matrix of the two
// sets of primaries (same white, D65), colours outside BT.709's gamut clipped to it, then the
// signals of that light. Read as they are, such colours look washed out (BT.2020's red is far
// redder than BT.709's).
enum class ColourPrimaries { BT709, BT2020, DisplayP3 };

// The SDR signals (0..1; R, G, B) in `primaries` of an SDR colour given in BT.709's: the same
// colour (a BT.709 colour lies inside the wider gamuts), light converted by the matrix between
// the primaries; BT.709: the signals themselves. What draws into wide-gamut video
// (frcnnoverlay), before hdr_signal() for HDR video.
std::array<double, 3> signals_in_primaries(ColourPrimaries primaries, const std::array<double, 3> &bt709_signals);

// The signal of `transfer` (0..1) for an SDR signal (0..1) put into HDR video as BT.2408 puts SDR
// content and graphics: the light an SDR display gives it (BT.1886), SDR white at the reference
// white of 203 cd/m2. What draws into HDR video (frcnnoverlay) so that its colours look as they
// do in SDR; the detector's mapping to SDR (see TransferFunction) reads such signals back as they
// were up to the highlights' compression (white as 0.96). SDR: the signal itself.
double hdr_signal(TransferFunction transfer, double sdr_signal);

// The columns a rectangle of a frame may start at: multiples of this. 1; 2 for 4:2:2 and 4:2:0
// formats, whose chroma samples cover pixel pairs; 6 for v210, whose words hold 6 pixels' samples
// together.
int rectangle_column_step(PixelFormat format);
// Whether a format's chroma samples cover 2x2 blocks (4:2:0), so that a rectangle of its frames
// must start at an even y.
bool chroma_needs_even_y(PixelFormat format);
// The rows a rectangle of a frame may start at: multiples of this. 1; 2 for 4:2:0 formats; 4 for
// interlaced 4:2:0 frames (FrameView::interlaced), whose chroma rows alternate between the fields.
int rectangle_row_step(PixelFormat format, bool interlaced = false);

// The width : height of one pixel.
struct PixelAspectRatio {
	int numerator = 1;
	int denominator = 1;
	bool square() const { return numerator == denominator; }
};

// A borrowed view of one frame: nothing is copied until the detector converts it.
struct FrameView {
	PixelFormat format = PixelFormat::RGB;
	int width = 0;
	int height = 0;
	const uint8_t *planes[3] = {nullptr, nullptr, nullptr};
	int strides[3] = {0, 0, 0}; // bytes per row of each plane
	// YUV formats only: their colours. Limited range is video's (luma 16 to 235, chroma 16 to
	// 240; in 10 bits 64 to 940 and 64 to 960, 8 bits' levels times 4, in 12 bits times 16, in 16
	// times 256), full range JPEG's (0 to 255; 0 to 1023 in 10 bits, 0 to 4095 in 12, 0 to 65535
	// in 16).
	YuvMatrix matrix = YuvMatrix::BT601;
	bool full_range = false;
	// Interlaced video: two fields woven into the frame, the top one in the even rows. A 4:2:0
	// frame's chroma rows then alternate between the fields as its luma rows do: chroma row 2k
	// belongs to rows 4k and 4k + 2 (top field), row 2k + 1 to rows 4k + 1 and 4k + 3 (bottom
	// field); such a frame has (height + 3) / 4 * 2 chroma rows, as GStreamer lays it out. Other
	// formats are read alike either way.
	bool interlaced = false;
	// The shape of a pixel, width : height (a video's pixel-aspect-ratio); both positive. Frames
	// of pixels that are not square (anamorphic video: 720x576 at 64:45 shows as 1024x576, 1440x1080
	// at 4:3 as 1920x1080) are resized for the model as the frame of width * numerator /
	// denominator by height square pixels that a display shows would be, so that objects have
	// their true shapes; the detections stay in the frame's own pixels. 1:1 (the default) is
	// torchvision's resize of the frame as it is stored.
	PixelAspectRatio pixel_aspect_ratio;
	// HDR video (PQ, HLG) is mapped to SDR for the model; see TransferFunction. Any format.
	TransferFunction transfer = TransferFunction::SDR;
	// Wide-gamut video's colours are converted to BT.709's; see ColourPrimaries. Any format.
	ColourPrimaries primaries = ColourPrimaries::BT709;
};

// The rectangle of `frame` at (x, y) of width x height pixels, as a view of the same memory:
// nothing is copied. Where a chroma sample covers several pixels, the rectangle starts on one:
// at an even x for 4:2:2 and 4:2:0 formats (a multiple of 6 for v210: rectangle_column_step),
// and an even y for 4:2:0 (NV12, NV21, I420, YV12); interlaced 4:2:0 frames at a y that is a
// multiple of 4 (rectangle_row_step).
// Throws frcnn::Error when the rectangle is empty, does not lie inside the frame or is not so
// aligned.
FrameView crop_frame(const FrameView &frame, int x, int y, int width, int height);

// A frame held for a later Detector::detect(), so that the batch need not move its bytes.
// Detector::copy_frame() copies them: for a CUDA device into page-locked host memory and on to the
// device (on a stream of its own, while whatever batch runs goes on), where detect() reads them;
// plain memory on the CPU. Detector::hold_frame() copies them only where they must move (a CUDA
// device); on the CPU it keeps the frame's owner and the batch reads the bytes where they lie.
// Both may run on another thread while a batch runs: frcnndetect holds each frame as it arrives,
// while the batch before it runs. Read-only; what it holds is shared between the copies of this
// object and let go when the last one goes.
class HeldFrame {
public:
	HeldFrame() = default;
	// The frame: its planes point into the copied bytes, or into the owner's (strides as in
	// the original).
	const FrameView &view() const { return view_; }
	bool empty() const { return bytes_ == nullptr; }

private:
	friend class Detector;
	friend HeldFrame crop_frame(const HeldFrame &frame, int x, int y, int width, int height);
	FrameView view_;
	std::shared_ptr<const void> bytes_; // the memory's owner, as Detector allocated it
};

// The rectangle of a held frame, holding the same bytes: nothing is copied or moved, also on a
// CUDA device, where the batch reads the rectangle out of the frame's copy there. One copy of a
// frame thus serves all the rectangles cut from it (frcnndetect's regions of interest). Checks
// and errors as crop_frame() of a view; also throws frcnn::Error for an empty HeldFrame.
HeldFrame crop_frame(const HeldFrame &frame, int x, int y, int width, int height);

struct Detection {
	float x1, y1, x2, y2; // frame pixels
	int64_t label;
	float score;
};

struct Checkpoint; // frcnn/checkpoint.h

struct DetectorOptions {
	ModelConfig model;	     // architecture and thresholds
	std::string weights;	     // checkpoint path (already resolved); empty: random_seed init
	// The weights already read (read_checkpoint), for a caller that looked into them first:
	// used instead of reading `weights` again, which then only names them.
	std::shared_ptr<const Checkpoint> checkpoint;
	uint64_t random_seed = 0;    // used only without weights (tests, benchmarks)
	std::string device = "cpu";  // "cpu", "cuda", "cuda:N"
	// Arithmetic of the convolutions and linear layers: fp16 on CUDA only, bf16 on CPUs with
	// bfloat16 instructions only, int8 on the CPU (see Precision).
	Precision precision = Precision::Fp32;
	// Int8: the calibration file. When it exists, its ranges are used from the first frame
	// (it must be for this model); otherwise the detector calibrates on the first
	// `int8_calibration_frames` frames it is given (running them in float: their detections
	// are fp32's) and then writes it there, for the next start (a write that fails is not an
	// exception of detect(): see take_int8_calibration_write_error). Empty: calibrate, keep
	// nothing.
	std::string int8_calibration;
	int int8_calibration_frames = 16;
	bool channels_last = false;  // NHWC convolutions (fastest with fp16 on CUDA)
	// The CPU's convolution kernels (fp32 and bf16 on the CPU; see CpuConvolutions).
	CpuConvolutions cpu_convolutions = CpuConvolutions::Auto;
	int threads = 0;	     // CPU threads (set_cpu_threads) from the constructing thread; 0 = as they are, < 0 refused
};

class Detector {
public:
	// Builds the model and loads the weights. Throws frcnn::Error with a user-facing message.
	explicit Detector(const DetectorOptions &options);
	~Detector();
	Detector(const Detector &) = delete;
	Detector &operator=(const Detector &) = delete;

	// Runs one batch. Frames may have different sizes and formats.
	std::vector<std::vector<Detection>> detect(const std::vector<FrameView> &frames);
	// The same from held frames (copy_frame(), hold_frame()), made by this detector or one on
	// the same device.
	std::vector<std::vector<Detection>> detect(const std::vector<HeldFrame> &frames);

	// Copies a frame for a later detect(); see HeldFrame. Safe to call from another thread
	// while detect() runs. Throws frcnn::Error on a bad view or when no memory is left.
	HeldFrame copy_frame(const FrameView &frame) const;
	// Holds a frame for a later detect() with as few copies as the device allows. On the CPU
	// nothing is copied: the HeldFrame keeps `owner`, which must keep the view's bytes alive and
	// unchanged until the HeldFrame and its copies are gone. On a CUDA device the bytes are
	// copied as copy_frame() copies them and `owner` is let go before this returns. Safe to call
	// from another thread while detect() runs. Throws frcnn::Error on a bad view (then `owner`
	// is let go too).
	HeldFrame hold_frame(const FrameView &frame, std::shared_ptr<const void> owner) const;

	// The settings a detector may change between batches; each throws frcnn::Error for a value
	// out of range (thresholds 0 to 1, detections 0 or more, sizes 1 or more). Not safe to call
	// while detect() runs on another thread: a caller that shares a detector between threads
	// runs its batches and setters one at a time (frcnndetect's elements under one
	// model-instance-id do). detect() itself runs one batch at a time alike.
	const ModelConfig &config() const;
	void set_score_threshold(double value);
	void set_nms_threshold(double value);
	void set_max_detections(int value);
	void set_image_size(int min_size, int max_size);
	// What runs the convolutions on the CPU: LibTorch or OneDnn (Auto resolved; LibTorch on
	// other devices, where the choice does not apply).
	CpuConvolutions cpu_convolutions() const;
	// Int8: whether the convolutions run in 8 bits yet (false while calibrating, and for the
	// other precisions).
	bool int8_calibrated() const;
	// Int8: the frames (images) observed so far for a calibration not made yet (0 once it is
	// made, and for the other precisions).
	int int8_frames_observed() const;
	// Int8: why the calibration file (DetectorOptions::int8_calibration) could not be written
	// when the calibration was made (a full disk, a folder removed meanwhile); empty when it
	// was, or when there is nothing to say. The detect() that made the calibration returns
	// its detections all the same, and the model runs in 8 bits on the calibration it keeps;
	// the file is not tried again. Reading the reason clears it.
	std::string take_int8_calibration_write_error();

	// Whether this build can run on CUDA devices.
	static bool cuda_built();

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

// How many threads the CPU work that the calling thread starts runs on: LibTorch's operators and
// the oneDNN convolutions. The count belongs to the calling thread (each thread has its own team),
// and LibTorch also takes it as the count of threads that have not run any of its operators yet.
// Does nothing when the thread's count is already `threads`, so it may be called before every
// batch (setting another count restarts LibTorch's thread pools). Throws frcnn::Error if
// `threads` < 1.
void set_cpu_threads(int threads);
// The calling thread's count.
int cpu_threads();
// LibTorch's count for a thread given none: OMP_NUM_THREADS, else the cores it finds.
int default_cpu_threads();

} // namespace frcnn
