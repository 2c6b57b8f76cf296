// SPDX-License-Identifier: BSD-3-Clause
// Published weights by name, the torch hub cache, and downloads.
//
// The cache layout, the file naming and the hash rule are torchvision's (torch.hub.get_dir,
// load_state_dict_from_url with check_hash=True), so that files a Python user already downloaded
// are reused and files downloaded here are reused by Python.

#include "frcnn/weights.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "frcnn-build-config.h"
#include "frcnn/checkpoint.h"
#include "frcnn/error.h"

namespace frcnn {

namespace {

const std::string kBaseUrl = "https://download.pytorch.org/models/";

std::string errno_message(int err)
{
	return std::error_code(err, std::generic_category()).message();
}

std::string preset_names()
{
	std::string names;
	for (const WeightsPreset &preset : weights_presets()) {
		if (!names.empty())
			names += ", ";
		names += preset.name;
	}
	return names;
}

std::string join_path(const std::string &dir, const std::string &name)
{
	if (dir.empty())
		return name;
	if (dir.back() == '/')
		return dir + name;
	return dir + "/" + name;
}

// The passwd entry's home folder, for "~" without $HOME and for "~user".
std::optional<std::string> passwd_home(const std::string *user)
{
	long size = sysconf(_SC_GETPW_R_SIZE_MAX);
	std::vector<char> buffer(size > 0 ? size : 16384);
	struct passwd entry;
	struct passwd *result = nullptr;
	int ret = user ? getpwnam_r(user->c_str(), &entry, buffer.data(), buffer.size(), &result)
		       : getpwuid_r(getuid(), &entry, buffer.data(), buffer.size(), &result);
	if (ret != 0 || !result || !result->pw_dir)
		return std::nullopt;
	return std::string(result->pw_dir);
}

// Python's os.path.expanduser, which torch.hub applies to the whole cache folder. Unlike Python,
// a "~" that cannot be expanded is an error: left as is it would create a folder named "~".
std::string expand_user(const std::string &path)
{
	if (path.empty() || path[0] != '~')
		return path;

	size_t slash = path.find('/');
	std::string user = path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
	std::string rest = slash == std::string::npos ? "" : path.substr(slash);

	std::optional<std::string> home;
	if (user.empty()) {
		const char *env = std::getenv("HOME");
		if (env && *env)
			home = env;
		else
			home = passwd_home(nullptr);
	} else {
		home = passwd_home(&user);
	}
	if (!home)
		throw Error("cannot find the home folder to expand '" + path +
			    "' for the weights cache; set TORCH_HOME to a folder");

	while (!home->empty() && home->back() == '/')
		home->pop_back();
	std::string expanded = *home + rest;
	return expanded.empty() ? "/" : expanded;
}

bool is_url(const std::string &value)
{
	auto starts_with_nocase = [&](const std::string &prefix) {
		if (value.size() < prefix.size())
			return false;
		return std::equal(prefix.begin(), prefix.end(), value.begin(), [](char a, char b) {
			return a == std::tolower(static_cast<unsigned char>(b));
		});
	};
	return starts_with_nocase("http://") || starts_with_nocase("https://");
}

// The last component of the URL's path, as os.path.basename(urlparse(url).path).
std::string url_file_name(const std::string &url)
{
	size_t authority = url.find("://") + 3;
	size_t end = url.find_first_of("?#", authority);
	std::string rest = url.substr(authority, end == std::string::npos ? std::string::npos
									 : end - authority);
	size_t path_start = rest.find('/');
	std::string name;
	if (path_start != std::string::npos)
		name = rest.substr(rest.rfind('/') + 1);
	if (name.empty() || name == "." || name == "..")
		throw Error("weights URL '" + url +
			    "' does not end in a file name; give the URL of a checkpoint file");
	return name;
}

// torch.hub's HASH_REGEX, searched like Python's re.search: the first "-<hex>." in the name.
std::optional<std::string> hash_prefix(const std::string &file_name)
{
	static const std::regex re("-([a-f0-9]*)\\.");
	std::smatch match;
	if (!std::regex_search(file_name, match, re))
		return std::nullopt;
	return match[1].str();
}

class Sha256
{
public:
	Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free)
	{
		if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
			throw Error("cannot set up sha256 hashing (OpenSSL EVP_DigestInit_ex failed)");
	}

	void update(const void *data, size_t size)
	{
		if (EVP_DigestUpdate(ctx_.get(), data, size) != 1)
			throw Error("sha256 hashing failed (OpenSSL EVP_DigestUpdate)");
	}

	std::string hex_digest()
	{
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int size = 0;
		if (EVP_DigestFinal_ex(ctx_.get(), digest, &size) != 1)
			throw Error("sha256 hashing failed (OpenSSL EVP_DigestFinal_ex)");
		static const char hex[] = "0123456789abcdef";
		std::string text;
		for (unsigned int i = 0; i < size; ++i) {
			text += hex[digest[i] >> 4];
			text += hex[digest[i] & 0xf];
		}
		return text;
	}

private:
	std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

constexpr const char *kPartialSuffix = ".partial-";

// A file created next to its final name and removed unless it was moved there, so that a failed
// or interrupted download never leaves anything a later lookup could mistake for the real file.
// It is locked while it exists: a process killed during its download (a signal runs no
// destructor) leaves it unlocked, which remove_abandoned_downloads tells by.
class TemporaryFile
{
public:
	explicit TemporaryFile(const std::string &final_path)
	{
		std::string pattern = final_path + kPartialSuffix + "XXXXXX";
		std::vector<char> name(pattern.begin(), pattern.end());
		name.push_back('\0');
		fd_ = mkostemp(name.data(), O_CLOEXEC);
		if (fd_ < 0) {
			int err = errno;
			throw Error("cannot create a file in the weights cache folder (" + pattern +
				    ": " + errno_message(err) +
				    "); set TORCH_HOME to a writable folder, or set weights to a local file");
		}
		path_ = name.data();
		// On a file system without locks this fails, and so does remove_abandoned_downloads's
		// lock: nothing is removed there.
		::flock(fd_, LOCK_EX | LOCK_NB);
	}

	~TemporaryFile()
	{
		if (fd_ >= 0)
			::close(fd_);
		if (!path_.empty())
			::unlink(path_.c_str());
	}

	TemporaryFile(const TemporaryFile &) = delete;
	TemporaryFile &operator=(const TemporaryFile &) = delete;

	int fd() const { return fd_; }
	const std::string &path() const { return path_; }

	// Flushes and closes the file, then moves it to `final_path` in one step.
	void commit(const std::string &final_path)
	{
		// The cache holds published data; make it readable like any other downloaded file
		// rather than keeping mkstemp's owner-only mode.
		if (::fchmod(fd_, 0644) != 0 || ::fsync(fd_) != 0)
			throw_io("cannot write " + path_);
		int fd = fd_;
		fd_ = -1;
		if (::close(fd) != 0)
			throw_io("cannot write " + path_);
		if (::rename(path_.c_str(), final_path.c_str()) != 0)
			throw_io("cannot move " + path_ + " to " + final_path);
		path_.clear();
	}

private:
	[[noreturn]] static void throw_io(const std::string &what)
	{
		int err = errno;
		throw Error(what + ": " + errno_message(err));
	}

	int fd_ = -1;
	std::string path_;
};

struct Transfer {
	Transfer(int fd_, const DownloadProgress &progress_) : fd(fd_), progress(progress_) {}

	int fd;
	CURL *handle = nullptr;
	const DownloadProgress &progress;
	Sha256 sha256;
	long long received = 0;
	std::string head; // the first bytes, to tell a web page from a checkpoint
	int write_errno = 0;
	std::exception_ptr callback_error;
};

size_t write_callback(char *data, size_t size, size_t count, void *user)
{
	Transfer &transfer = *static_cast<Transfer *>(user);
	size_t total = size * count;
	try {
		transfer.sha256.update(data, total);
		if (transfer.head.size() < 64)
			transfer.head.append(data, std::min(total, 64 - transfer.head.size()));
	} catch (...) {
		transfer.callback_error = std::current_exception();
		return 0;
	}
	size_t written = 0;
	while (written < total) {
		ssize_t ret = ::write(transfer.fd, data + written, total - written);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			transfer.write_errno = errno;
			return 0;
		}
		written += ret;
	}
	transfer.received += total;
	return total;
}

// Exceptions must not cross libcurl's C frames: keep the progress callback's exception, abort
// the transfer, and rethrow it once curl_easy_perform has returned.
int progress_callback(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t)
{
	Transfer &transfer = *static_cast<Transfer *>(user);
	// Before a successful answer the bytes are an error page's or a redirect's, not the file's:
	// no progress yet (the callback still runs, so that it can end the transfer).
	long status = 0;
	if (curl_easy_getinfo(transfer.handle, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status < 200 ||
	    status >= 300)
		dlnow = dltotal = 0;
	try {
		transfer.progress(dlnow, dltotal > 0 ? dltotal : -1);
	} catch (...) {
		transfer.callback_error = std::current_exception();
		return 1;
	}
	return 0;
}

void init_curl()
{
	static std::once_flag once;
	static CURLcode result = CURLE_OK;
	std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
	if (result != CURLE_OK)
		throw Error(std::string("cannot initialise libcurl: ") + curl_easy_strerror(result));
}

std::string offline_hint(const std::string &path)
{
	return "Without network, fetch that file elsewhere and copy it to " + path +
	       ", or set weights to a local file";
}

// torchvision's download_url_to_file: download to a temporary file in the cache folder, check the
// sha256 prefix from the file name, then move it into place.
void download(const std::string &url, const std::string &dir, const std::string &path,
	      const DownloadProgress &progress)
{
	std::error_code ec;
	std::filesystem::create_directories(dir, ec);
	if (ec)
		throw Error("cannot create the weights cache folder " + dir + " (" + ec.message() +
			    ") to download " + url +
			    " into; set TORCH_HOME to a writable folder, or fetch that file elsewhere "
			    "and set weights to its path");

	init_curl();
	std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
								 curl_easy_cleanup);
	if (!curl)
		throw Error("cannot download " + url + ": curl_easy_init failed");

	TemporaryFile temporary(path);
	Transfer transfer(temporary.fd(), progress);

	char error_buffer[CURL_ERROR_SIZE] = {};
	static const std::string user_agent = std::string("gst-frcnn/") + FRCNN_VERSION;
	CURL *handle = curl.get();
	transfer.handle = handle;
	curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
	curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
	curl_easy_setopt(handle, CURLOPT_USERAGENT, user_agent.c_str());
	curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(handle, CURLOPT_FAILONERROR, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
	curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
	// Signals are not safe in a multi-threaded host such as a GStreamer pipeline.
	curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, 30L);
	// A stalled connection fails instead of hanging the pipeline forever.
	curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
	if (progress) {
		curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, progress_callback);
		curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &transfer);
		curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
	}

	CURLcode result = curl_easy_perform(handle);
	if (transfer.callback_error)
		std::rethrow_exception(transfer.callback_error);
	if (transfer.write_errno)
		throw Error("cannot write the download of " + url + " to " + temporary.path() + " (" +
			    errno_message(transfer.write_errno) +
			    "); free some space or set TORCH_HOME to another folder");
	if (result != CURLE_OK) {
		std::string reason;
		long status = 0;
		if (result == CURLE_HTTP_RETURNED_ERROR &&
		    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status)
			reason = "the server answered HTTP " + std::to_string(status);
		else if (error_buffer[0])
			reason = error_buffer;
		else
			reason = curl_easy_strerror(result);
		throw Error("could not download " + url + " (" + reason + "). " + offline_hint(path));
	}

	if (progress)
		progress(transfer.received, transfer.received);

	// What a wrong link, a login page or a proxy's error page gives with HTTP 200: kept in the
	// cache, it would fail every later start.
	auto web_page = [](std::string head) {
		head.erase(0, head.find_first_not_of(" \t\r\n"));
		std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
		return head.rfind("<!doctype html", 0) == 0 || head.rfind("<html", 0) == 0;
	};
	if (transfer.received == 0 || web_page(transfer.head))
		throw Error("the server sent " +
			    std::string(transfer.received == 0 ? "an empty file" : "a web page, not a checkpoint,") +
			    " for " + url + ". It was not kept. Check the URL, or fetch the file elsewhere and copy it to " +
			    path);

	std::string digest = transfer.sha256.hex_digest();
	std::optional<std::string> expected = hash_prefix(path.substr(path.rfind('/') + 1));
	if (expected && digest.compare(0, expected->size(), *expected) != 0)
		throw Error("the file downloaded from " + url +
			    " does not match the sha256 prefix in its name: expected a digest starting with \"" +
			    *expected + "\", got \"" + digest +
			    "\". It was not kept. The download may be damaged or the server sent another "
			    "file; try again, or fetch the file elsewhere and copy it to " +
			    path);

	// Anything else that is no checkpoint (an error page in JSON, a body cut short without a
	// length, a compressed answer) would fail every later start from the cache: read it first.
	try {
		read_checkpoint(temporary.path());
	} catch (const Error &e) {
		/* The reader names the file, whose temporary name is gone by the time this is read. */
		std::string reason = e.what();
		const std::string quoted = "checkpoint '" + temporary.path() + "': ";
		if (reason.rfind(quoted, 0) == 0)
			reason.erase(0, quoted.size());
		throw Error("the file downloaded from " + url + " is not a checkpoint this library reads (" +
			    reason + "). It was not kept. Check the URL, or fetch the file elsewhere and copy it to " +
			    path);
	}

	temporary.commit(path);
}

// Removes the temporary files of downloads of `name` whose process died (killed by a signal, a
// crash): unlocked, and older than a live download's could be when it has just been created. A
// download in progress holds its lock, also while its transfer stalls. Best effort: the cache
// folder may be read-only or hold files of others.
void remove_abandoned_downloads(const std::string &dir, const std::string &name)
{
	const std::string prefix = name + kPartialSuffix;
	std::error_code ec;
	std::filesystem::directory_iterator entries(dir, ec);
	if (ec)
		return;
	const auto now = std::filesystem::file_time_type::clock::now();
	for (; entries != std::filesystem::directory_iterator(); entries.increment(ec)) {
		if (ec)
			return;
		const std::filesystem::directory_entry &entry = *entries;
		const std::string file = entry.path().filename().string();
		if (file.compare(0, prefix.size(), prefix) != 0 || !entry.is_regular_file(ec))
			continue;
		const auto modified = entry.last_write_time(ec);
		if (ec || now - modified < std::chrono::minutes(1))
			continue;
		const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (::flock(fd, LOCK_EX | LOCK_NB) == 0)
			::unlink(entry.path().c_str());
		::close(fd);
	}
}

std::string resolve_url(const std::string &url, const DownloadProgress &progress)
{
	std::string name = url_file_name(url);
	std::string dir = hub_checkpoint_dir();
	std::string path = join_path(dir, name);
	remove_abandoned_downloads(dir, name);

	// As torchvision, a file already in the cache is used without hashing it again: it was
	// either checked when it was downloaded or put there on purpose.
	struct stat st;
	if (::stat(path.c_str(), &st) == 0) {
		if (!S_ISREG(st.st_mode))
			throw Error("the weights cache entry " + path +
				    " is not a regular file; remove it so that " + url +
				    " can be downloaded again");
		return path;
	}

	download(url, dir, path, progress);
	return path;
}

std::string resolve_path(const std::string &path)
{
	struct stat st;
	if (::stat(path.c_str(), &st) != 0) {
		int err = errno;
		bool bare_word = path.find_first_of("/.") == std::string::npos;
		if (err == ENOENT && bare_word)
			throw Error("weights '" + path +
				    "' is neither a known preset nor a file; the presets are: " +
				    preset_names());
		throw Error("cannot open weights file '" + path + "': " + errno_message(err));
	}
	if (S_ISDIR(st.st_mode))
		throw Error("weights '" + path + "' is a folder; give the path of a checkpoint file");
	if (!S_ISREG(st.st_mode))
		throw Error("weights '" + path + "' is not a regular file; give the path of a checkpoint file");

	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		throw Error("cannot read weights file '" + path + "': " + errno_message(err));
	}
	::close(fd);
	return path;
}

// Draws "  42% [############                ]  67.1/159.7 MiB" on one line of stderr.
class TerminalBar
{
public:
	~TerminalBar()
	{
		if (open_line_)
			std::fputc('\n', stderr);
	}

	void update(long long done, long long total)
	{
		using clock = std::chrono::steady_clock;
		bool finished = total >= 0 && done >= total;
		// Before the headers arrive there is nothing worth drawing.
		if (!open_line_ && total < 0 && done == 0)
			return;
		clock::time_point now = clock::now();
		if (open_line_ && !finished && now - last_draw_ < std::chrono::milliseconds(100))
			return;
		if (!open_line_ && finished && drawn_finished_)
			return;
		last_draw_ = now;

		constexpr double mib = 1024.0 * 1024.0;
		char line[160];
		if (total > 0) {
			constexpr int width = 30;
			double fraction = std::min(1.0, static_cast<double>(done) / total);
			int filled = static_cast<int>(fraction * width);
			std::string bar(filled, '#');
			bar.resize(width, ' ');
			std::snprintf(line, sizeof(line), "\r%4d%% [%s] %7.1f/%.1f MiB\x1b[K",
				      static_cast<int>(fraction * 100), bar.c_str(), done / mib,
				      total / mib);
		} else {
			std::snprintf(line, sizeof(line), "\r%7.1f MiB\x1b[K", done / mib);
		}
		std::fputs(line, stderr);
		open_line_ = true;
		drawn_finished_ = false;
		if (finished) {
			std::fputc('\n', stderr);
			open_line_ = false;
			drawn_finished_ = true;
		}
	}

private:
	bool open_line_ = false;
	bool drawn_finished_ = false;
	std::chrono::steady_clock::time_point last_draw_;
};

} // namespace

const std::vector<WeightsPreset> &weights_presets()
{
	static const std::vector<WeightsPreset> presets = {
		{ "coco", "fasterrcnn_resnet50_fpn",
		  kBaseUrl + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", 91, 0.0 },
		{ "coco-v2", "fasterrcnn_resnet50_fpn_v2",
		  kBaseUrl + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", 91, 1e-5 },
		{ "coco-mobilenet", "fasterrcnn_mobilenet_v3_large_fpn",
		  kBaseUrl + "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", 91, 1e-5 },
		{ "coco-mobilenet-320", "fasterrcnn_mobilenet_v3_large_320_fpn",
		  kBaseUrl + "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth", 91, 1e-5 },
	};
	return presets;
}

std::optional<WeightsPreset> find_weights_preset(const std::string &name)
{
	for (const WeightsPreset &preset : weights_presets()) {
		if (preset.name == name)
			return preset;
	}
	return std::nullopt;
}

std::optional<WeightsPreset> weights_preset_of(const std::string &weights)
{
	if (std::optional<WeightsPreset> preset = find_weights_preset(weights))
		return preset;
	auto file_name = [](const std::string &path) { return path.substr(path.find_last_of('/') + 1); };
	std::string name;
	try {
		/* A URL's file name is its path's last step, without query or fragment. */
		name = is_url(weights) ? url_file_name(weights) : file_name(weights);
	} catch (const Error &) {
		return std::nullopt; /* a URL without a file name: resolve_weights says so */
	}
	for (const WeightsPreset &preset : weights_presets()) {
		if (!name.empty() && file_name(preset.url) == name)
			return preset;
	}
	return std::nullopt;
}

std::string hub_checkpoint_dir()
{
	// Empty variables count as unset, as the XDG rules say; torch.hub would use a relative path.
	std::string torch_home;
	const char *env = std::getenv("TORCH_HOME");
	if (env && *env) {
		torch_home = env;
	} else {
		const char *xdg = std::getenv("XDG_CACHE_HOME");
		torch_home = join_path(xdg && *xdg ? xdg : "~/.cache", "torch");
	}
	return join_path(join_path(expand_user(torch_home), "hub"), "checkpoints");
}

std::optional<std::string> weights_cache_path(const std::string &weights)
{
	std::string url;
	if (std::optional<WeightsPreset> preset = find_weights_preset(weights))
		url = preset->url;
	else if (is_url(weights))
		url = weights;
	else
		return std::nullopt;
	return join_path(hub_checkpoint_dir(), url_file_name(url));
}

bool weights_need_download(const std::string &weights)
{
	try {
		const std::optional<std::string> path = weights_cache_path(weights);
		/* As resolve_url looks: anything there, even what is no file, is not downloaded. */
		struct stat st;
		return path && ::stat(path->c_str(), &st) != 0;
	} catch (const Error &) {
		return false;
	}
}

int class_count_before_download(const std::string &weights, int num_classes)
{
	const std::optional<WeightsPreset> preset = weights_preset_of(weights);
	if (!preset || !weights_need_download(weights) || (num_classes != 0 && num_classes != preset->num_classes))
		return 0;
	return preset->num_classes;
}

std::string cached_download_advice(const std::string &weights)
{
	if (!find_weights_preset(weights) && !is_url(weights))
		return {};
	return "The file is the download of '" + weights + "' kept in the cache (" + hub_checkpoint_dir() +
	       "): delete it to download it again.";
}

std::string resolve_weights(const std::string &weights, const DownloadProgress &progress)
{
	if (weights.empty())
		throw Error("no weights given; set weights to a preset (" + preset_names() +
			    "), an http(s) URL or a checkpoint file");
	if (std::optional<WeightsPreset> preset = find_weights_preset(weights))
		return resolve_url(preset->url, progress);
	if (is_url(weights))
		return resolve_url(weights, progress);
	return resolve_path(weights);
}

DownloadProgress terminal_progress_bar()
{
	if (!::isatty(STDERR_FILENO))
		return [](long long, long long) {};
	auto bar = std::make_shared<TerminalBar>();
	return [bar](long long done, long long total) { bar->update(done, total); };
}

} // namespace frcnn
