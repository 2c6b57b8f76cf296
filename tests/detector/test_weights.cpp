// SPDX-License-Identifier: BSD-3-Clause
// Published weights by name, the torch hub cache and downloads, checked against torchvision and a
// local HTTP server.

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common.h"
#include "frcnn/checkpoint.h"
#include "frcnn/error.h"
#include "frcnn/weights.h"

extern char **environ;

namespace fs = std::filesystem;

namespace {

std::string python()
{
	const char *env = std::getenv("FRCNN_REF_PYTHON");
	return env && *env ? env : "/usr/bin/python3";
}

std::string shell_quote(const std::string &text)
{
	std::string quoted = "'";
	for (char c : text)
		quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
	return quoted + "'";
}

// Runs a shell command and returns its stdout; fails the test on a non-zero exit.
std::string run(const std::string &command)
{
	FILE *pipe = popen(command.c_str(), "r");
	if (!pipe)
		throw std::runtime_error("popen failed for: " + command);
	std::string output;
	char buffer[4096];
	size_t n;
	while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
		output.append(buffer, n);
	int status = pclose(pipe);
	if (status != 0)
		throw std::runtime_error("command failed (" + std::to_string(status) + "): " + command +
					 "\n" + output);
	return output;
}

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> result;
	std::istringstream stream(text);
	for (std::string line; std::getline(stream, line);)
		result.push_back(line);
	return result;
}

std::string read_file(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string &path, const std::string &data)
{
	std::ofstream out(path, std::ios::binary);
	out << data;
	if (!out)
		throw std::runtime_error("cannot write " + path);
}

// The digest comes from coreutils, independently of the code under test.
std::string sha256_of(const std::string &path)
{
	std::string output = run("sha256sum " + shell_quote(path));
	return output.substr(0, 64);
}

std::string random_bytes(size_t size, unsigned seed)
{
	std::mt19937 rng(seed);
	std::string data(size, '\0');
	for (char &c : data)
		c = static_cast<char>(rng() & 0xff);
	return data;
}

std::vector<std::string> entries(const std::string &dir)
{
	std::vector<std::string> names;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(dir, ec))
		names.push_back(entry.path().filename().string());
	std::sort(names.begin(), names.end());
	return names;
}

template<typename F>
std::string error_of(F &&f)
{
	try {
		f();
	} catch (const frcnn::Error &e) {
		return e.what();
	}
	ADD_FAILURE() << "expected frcnn::Error";
	return {};
}

class TempDir
{
public:
	TempDir()
	{
		std::string pattern = (fs::temp_directory_path() / "frcnn-weights-XXXXXX").string();
		std::vector<char> name(pattern.begin(), pattern.end());
		name.push_back('\0');
		if (!mkdtemp(name.data()))
			throw std::runtime_error("mkdtemp failed");
		path_ = name.data();
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path_, ec);
	}
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

// A checkpoint (one tensor of `size` random bytes) as a file's bytes: what a download must
// be to be kept.
std::string random_checkpoint(size_t size, unsigned seed)
{
	const std::string bytes = random_bytes(size, seed);
	torch::Tensor weight = torch::empty({ static_cast<int64_t>(size) }, torch::kUInt8);
	std::memcpy(weight.data_ptr(), bytes.data(), size);
	const TempDir dir;
	const std::string path = dir.path() + "/random.pth";
	frcnn::write_checkpoint(path, frcnn::StateDict{ { "weight", weight } });
	return read_file(path);
}

// Sets environment variables for the scope of one test and restores them afterwards.
class EnvGuard
{
public:
	~EnvGuard()
	{
		for (const auto &[name, value] : saved_) {
			if (value)
				setenv(name.c_str(), value->c_str(), 1);
			else
				unsetenv(name.c_str());
		}
	}

	void set(const std::string &name, const std::optional<std::string> &value)
	{
		if (!saved_.count(name)) {
			const char *old = std::getenv(name.c_str());
			saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
		}
		if (value)
			setenv(name.c_str(), value->c_str(), 1);
		else
			unsetenv(name.c_str());
	}

private:
	std::map<std::string, std::optional<std::string>> saved_;
};

const char kServerScript[] = R"PY(
import functools, http.server, os, sys, threading, time

root, log, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])

# Never outlive the test, even when it crashes before it can stop the server.
def watch_parent():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch_parent, daemon=True).start()

class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        # /moved/NAME redirects to /files/NAME, to check that redirects are followed.
        if self.path.startswith('/moved/'):
            self.send_response(302)
            self.send_header('Location', '/files/' + self.path[len('/moved/'):])
            self.end_headers()
            return
        super().do_GET()

    def log_request(self, code='-', size='-'):
        with open(log, 'a') as f:
            f.write('%s %s\n' % (self.path, code))

handler = functools.partial(Handler, directory=root)
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
)PY";

// An HTTP server on 127.0.0.1 serving `root`, stopped when destroyed. It binds a free port itself
// and reports it once it listens, so there is no race on the port.
class HttpServer
{
public:
	HttpServer(const std::string &root, const std::string &scratch)
		: log_(scratch + "/requests.log")
	{
		std::string script = scratch + "/server.py";
		write_file(script, kServerScript);
		write_file(log_, "");

		int fds[2];
		if (pipe(fds) != 0)
			throw std::runtime_error("pipe failed");
		posix_spawn_file_actions_t actions;
		posix_spawn_file_actions_init(&actions);
		posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
		posix_spawn_file_actions_addclose(&actions, fds[0]);
		posix_spawn_file_actions_addclose(&actions, fds[1]);
		std::string errors = scratch + "/server.stderr";
		posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errors.c_str(),
						 O_WRONLY | O_CREAT | O_TRUNC, 0644);
		std::string exe = python();
		std::vector<std::string> args = { exe, script, root, log_, std::to_string(getpid()) };
		std::vector<char *> argv;
		for (std::string &arg : args)
			argv.push_back(arg.data());
		argv.push_back(nullptr);
		int ret = posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ);
		posix_spawn_file_actions_destroy(&actions);
		close(fds[1]);
		if (ret != 0) {
			close(fds[0]);
			pid_ = -1;
			throw std::runtime_error("cannot start " + exe);
		}

		std::string line;
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		while (line.find('\n') == std::string::npos) {
			if (poll(&pfd, 1, 30000) <= 0)
				break;
			char buffer[64];
			ssize_t n = read(fds[0], buffer, sizeof(buffer));
			if (n <= 0)
				break;
			line.append(buffer, n);
		}
		close(fds[0]);
		if (line.find('\n') == std::string::npos) {
			stop();
			throw std::runtime_error("the HTTP server did not start: " + read_file(errors));
		}
		port_ = std::stoi(line);
	}

	~HttpServer() { stop(); }

	void stop()
	{
		if (pid_ <= 0)
			return;
		kill(pid_, SIGTERM);
		int status;
		waitpid(pid_, &status, 0);
		pid_ = -1;
	}

	std::string url(const std::string &path) const
	{
		return "http://127.0.0.1:" + std::to_string(port_) + path;
	}

	size_t requests() const { return lines(read_file(log_)).size(); }

private:
	std::string log_;
	pid_t pid_ = -1;
	int port_ = 0;
};

// A port on 127.0.0.1 that refuses connections: bound, so nothing else takes it, but not listening.
class ClosedPort
{
public:
	ClosedPort() : fd_(frcnn::test::bind_loopback(&port_)) {}
	~ClosedPort() { close(fd_); }
	int port() const { return port_; }

private:
	int port_ = 0;
	int fd_ = -1;
};

class WeightsTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		env_.set("TORCH_HOME", scratch_.path() + "/torch-home");
		cache_ = scratch_.path() + "/torch-home/hub/checkpoints";
		served_ = scratch_.path() + "/served";
		fs::create_directories(served_ + "/files");
	}

	// Serves `data` as /files/NAME, where NAME is built from the data's true sha256 digest by
	// `make_name`.
	using Namer = std::function<std::string(const std::string &digest)>;
	std::string serve(const std::string &data, const Namer &make_name)
	{
		std::string staging = scratch_.path() + "/staging";
		write_file(staging, data);
		std::string name = make_name(sha256_of(staging));
		fs::rename(staging, served_ + "/files/" + name);
		return name;
	}

	void start_server() { server_.emplace(served_, scratch_.path()); }

	TempDir scratch_;
	EnvGuard env_;
	std::string cache_;
	std::string served_;
	std::optional<HttpServer> server_;
};

TEST_F(WeightsTest, PresetsMatchTorchvisionWeights)
{
	const auto &presets = frcnn::weights_presets();
	std::vector<std::string> names;
	std::string archs;
	for (const auto &preset : presets) {
		names.push_back(preset.name);
		archs += " " + shell_quote(preset.arch);
	}
	EXPECT_EQ(names, (std::vector<std::string>{ "coco", "coco-v2", "coco-mobilenet",
						    "coco-mobilenet-320" }));

	// torchvision builds each model with its COCO_V1 weights, minus the download: the url, the
	// number of classes and the eps of every normalisation layer come from torchvision itself.
	const char *script = R"PY(
import sys, torch, torchvision.models as m
from torchvision.models._api import WeightsEnum
WeightsEnum.get_state_dict = lambda self, *a, **k: {}
torch.nn.Module.load_state_dict = lambda self, *a, **k: None
for arch in sys.argv[1:]:
    weights = m.get_model_weights(arch).COCO_V1
    model = m.get_model(arch, weights=weights)
    eps = {mod.eps for mod in model.modules()
           if hasattr(mod, 'eps') and hasattr(mod, 'running_mean')}
    assert len(eps) == 1, eps
    print(arch, weights.url, len(weights.meta['categories']),
          model.roi_heads.box_predictor.cls_score.out_features, repr(eps.pop()))
)PY";
	std::vector<std::string> reference = lines(
		run(python() + " -c " + shell_quote(script) + archs + " 2>&1"));
	ASSERT_EQ(reference.size(), presets.size());
	for (size_t i = 0; i < presets.size(); ++i) {
		const auto &preset = presets[i];
		std::istringstream fields(reference[i]);
		std::string arch, url;
		int categories = 0, outputs = 0;
		std::string eps;
		fields >> arch >> url >> categories >> outputs >> eps;
		SCOPED_TRACE(preset.name);
		EXPECT_EQ(arch, preset.arch);
		EXPECT_EQ(url, preset.url);
		EXPECT_EQ(categories, preset.num_classes);
		EXPECT_EQ(outputs, preset.num_classes);
		EXPECT_EQ(std::stod(eps), preset.frozen_bn_eps);

		auto found = frcnn::find_weights_preset(preset.name);
		ASSERT_TRUE(found);
		EXPECT_EQ(found->url, preset.url);
	}
	EXPECT_FALSE(frcnn::find_weights_preset("COCO"));
	EXPECT_FALSE(frcnn::find_weights_preset(""));
}

// A preset's file fetched by hand, or from a mirror, is that preset: by its published file name.
TEST_F(WeightsTest, APresetsFileByPathOrUrlIsThatPreset)
{
	for (const frcnn::WeightsPreset &preset : frcnn::weights_presets()) {
		SCOPED_TRACE(preset.name);
		const std::string file = preset.url.substr(preset.url.rfind('/') + 1);
		for (const std::string &weights : { preset.name, file, "/models/" + file, "http://mirror.example/x/" + file,
						    "https://mirror.example/x/" + file + "?download=1#top" }) {
			const auto found = frcnn::weights_preset_of(weights);
			ASSERT_TRUE(found) << weights;
			EXPECT_EQ(found->name, preset.name) << weights;
		}
	}
	for (const std::string &other : { std::string(""), std::string("/models/"), std::string("model.pth"),
					  std::string("/models/coco"), std::string("http://mirror.example/") })
		EXPECT_FALSE(frcnn::weights_preset_of(other)) << other;
}

TEST_F(WeightsTest, HubDirMatchesTorchHub)
{
	const std::string unset = "<unset>";
	const std::vector<std::vector<std::string>> cases = {
		// TORCH_HOME, XDG_CACHE_HOME, HOME
		{ "/srv/torch", "/srv/xdg", "/home/someone" },
		{ "/srv/torch/", unset, "/home/someone" },
		{ "~/torch", unset, "/home/someone" },
		{ unset, "/srv/xdg", "/home/someone" },
		{ unset, "~/xdg", "/home/someone/" },
		{ unset, unset, "/home/someone" },
		{ unset, unset, "/" },
	};
	const char *script = R"PY(
import os, sys, torch.hub
args = sys.argv[1:]
for i in range(0, len(args), 3):
    for name, value in zip(('TORCH_HOME', 'XDG_CACHE_HOME', 'HOME'), args[i:i + 3]):
        if value == '<unset>':
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    print(os.path.join(torch.hub.get_dir(), 'checkpoints'))
)PY";
	std::string command = python() + " -c " + shell_quote(script);
	for (const auto &c : cases)
		for (const auto &value : c)
			command += " " + shell_quote(value);
	std::vector<std::string> reference = lines(run(command));
	ASSERT_EQ(reference.size(), cases.size());

	const char *names[] = { "TORCH_HOME", "XDG_CACHE_HOME", "HOME" };
	for (size_t i = 0; i < cases.size(); ++i) {
		for (size_t j = 0; j < 3; ++j)
			env_.set(names[j], cases[i][j] == unset ? std::nullopt
							       : std::optional<std::string>(cases[i][j]));
		SCOPED_TRACE("case " + std::to_string(i));
		EXPECT_EQ(frcnn::hub_checkpoint_dir(), reference[i]);
	}

	// An empty variable counts as unset (torch.hub would make the cache relative to the
	// working folder).
	env_.set("TORCH_HOME", std::string());
	env_.set("XDG_CACHE_HOME", std::string("/srv/xdg"));
	EXPECT_EQ(frcnn::hub_checkpoint_dir(), "/srv/xdg/torch/hub/checkpoints");
	env_.set("XDG_CACHE_HOME", std::string());
	env_.set("HOME", std::string("/home/someone"));
	EXPECT_EQ(frcnn::hub_checkpoint_dir(), "/home/someone/.cache/torch/hub/checkpoints");
}

TEST_F(WeightsTest, DownloadsIntoCacheOnceThenReusesIt)
{
	const std::string data = random_checkpoint(3 << 20, 1);
	std::string name = serve(data, [](const std::string &digest) {
		return "tiny_detector-" + digest.substr(0, 8) + ".pth";
	});
	start_server();
	const std::string url = server_->url("/files/" + name);

	std::vector<std::pair<long long, long long>> calls;
	std::string path = frcnn::resolve_weights(url, [&](long long done, long long total) {
		calls.emplace_back(done, total);
	});
	EXPECT_EQ(path, cache_ + "/" + name);
	EXPECT_TRUE(read_file(path) == data) << "cached file differs from the served one";
	EXPECT_EQ(entries(cache_), std::vector<std::string>{ name });
	EXPECT_EQ(server_->requests(), 1u);

	ASSERT_FALSE(calls.empty());
	const long long size = data.size();
	EXPECT_EQ(calls.back().first, size);
	EXPECT_EQ(calls.back().second, size);
	for (size_t i = 1; i < calls.size(); ++i)
		EXPECT_LE(calls[i - 1].first, calls[i].first) << "progress went backwards at call " << i;
	for (const auto &[done, total] : calls)
		EXPECT_TRUE(total == -1 || total == size)
			<< "total " << total;

	// A cached file is used as is: no second request, and none needed once the server is gone.
	EXPECT_EQ(frcnn::resolve_weights(url), path);
	EXPECT_EQ(server_->requests(), 1u);
	server_->stop();
	EXPECT_EQ(frcnn::resolve_weights(url), path);
	EXPECT_TRUE(read_file(path) == data);
}

TEST_F(WeightsTest, HashPrefixRules)
{
	std::string full = serve(random_checkpoint(1000, 2), [](const std::string &digest) {
		return "full-" + digest + ".pt";
	});
	// Only the first "-<hex>." counts, as torch.hub's regex search: "-v2" is not hex, so the
	// prefix is the part after the second dash.
	std::string second = serve(random_checkpoint(1000, 3), [](const std::string &digest) {
		return "net-v2-" + digest.substr(0, 12) + ".pth";
	});
	std::string unchecked = serve(random_checkpoint(1000, 4), [](const std::string &) {
		return "no_hash_here-v1.pth";
	});
	start_server();

	for (const std::string &name : { full, second, unchecked }) {
		SCOPED_TRACE(name);
		std::string path;
		EXPECT_NO_THROW(path = frcnn::resolve_weights(server_->url("/files/" + name)));
		EXPECT_EQ(path, cache_ + "/" + name);
		EXPECT_TRUE(read_file(path) == read_file(served_ + "/files/" + name));
	}
	EXPECT_EQ(entries(cache_), (std::vector<std::string>{ full, second, unchecked }));
}

TEST_F(WeightsTest, HashMismatchIsRejectedAndNothingKept)
{
	std::string actual;
	std::string name = serve(random_checkpoint(200000, 5), [&](const std::string &digest) {
		actual = digest;
		// The true prefix with its first digit changed.
		std::string wrong = digest.substr(0, 8);
		wrong[0] = wrong[0] == '0' ? '1' : '0';
		return "tampered-" + wrong + ".pth";
	});
	start_server();
	const std::string url = server_->url("/files/" + name);
	const std::string expected = name.substr(9, 8);

	std::string message = error_of([&] { frcnn::resolve_weights(url); });
	EXPECT_NE(message.find("sha256"), std::string::npos) << message;
	EXPECT_NE(message.find("\"" + expected + "\""), std::string::npos) << message;
	EXPECT_NE(message.find(actual), std::string::npos) << message;
	EXPECT_NE(message.find(url), std::string::npos) << message;
	EXPECT_TRUE(fs::is_directory(cache_));
	EXPECT_EQ(entries(cache_), std::vector<std::string>{});

	// Rejected every time, not cached by the failed attempt.
	EXPECT_THROW(frcnn::resolve_weights(url), frcnn::Error);
	EXPECT_EQ(entries(cache_), std::vector<std::string>{});
	EXPECT_EQ(server_->requests(), 2u);
}

// HTTP 200 with an empty body or a web page (a wrong link, a login or a proxy's error page): not a
// checkpoint, refused and not kept, so that the next start tries again.
TEST_F(WeightsTest, AnEmptyFileOrAWebPageIsRefusedAndNothingKept)
{
	const std::string page = "\n  <!DOCTYPE HTML>\n<html><body>Please sign in</body></html>\n";
	const std::string empty_name = serve("", [](const std::string &) { return "empty.pth"; });
	const std::string page_name = serve(page, [](const std::string &) { return "page.pth"; });
	/* Named with a sha256 prefix, as the presets' files are: a login page in place of one is
	 * said to be a page, not a damaged download to try again. */
	const std::string hashed_empty_name = serve("", [](const std::string &) { return "empty-258fb6c6.pth"; });
	const std::string hashed_page_name = serve(page, [](const std::string &) { return "page-258fb6c6.pth"; });
	start_server();
	for (const auto &[name, what] : { std::pair{ empty_name, "an empty file" },
					  std::pair{ page_name, "a web page, not a checkpoint," },
					  std::pair{ hashed_empty_name, "an empty file" },
					  std::pair{ hashed_page_name, "a web page, not a checkpoint," } }) {
		SCOPED_TRACE(name);
		const std::string url = server_->url("/files/" + name);
		const std::string message = error_of([&] { frcnn::resolve_weights(url); });
		EXPECT_NE(message.find(std::string("the server sent ") + what + " for " + url), std::string::npos)
			<< message;
		EXPECT_NE(message.find(cache_ + "/" + name), std::string::npos) << message;
		EXPECT_EQ(entries(cache_), std::vector<std::string>{});
	}
}

// Anything else that is no checkpoint (an error answer in JSON, a body cut short, a compressed
// answer): refused, saying why, and not kept, so that the next start tries again.
TEST_F(WeightsTest, AFileThatIsNoCheckpointIsRefusedAndNothingKept)
{
	const std::string checkpoint = random_checkpoint(5000, 8);
	const std::string json_name =
		serve("{\"error\": \"rate limited\"}\n", [](const std::string &) { return "answer.pth"; });
	const std::string cut_name =
		serve(checkpoint.substr(0, checkpoint.size() / 2), [](const std::string &) { return "cut.pth"; });
	start_server();
	for (const std::string &name : { json_name, cut_name }) {
		SCOPED_TRACE(name);
		const std::string url = server_->url("/files/" + name);
		const std::string message = error_of([&] { frcnn::resolve_weights(url); });
		EXPECT_NE(message.find("the file downloaded from " + url + " is not a checkpoint this library reads ("),
			  std::string::npos)
			<< message;
		EXPECT_NE(message.find("It was not kept"), std::string::npos) << message;
		EXPECT_EQ(message.find(".partial-"), std::string::npos) << "names the temporary file, gone: " << message;
		EXPECT_EQ(entries(cache_), std::vector<std::string>{});
	}
}

// A download whose process was killed (a signal runs no destructor) leaves its temporary file;
// the next lookup of the same URL removes it, but not the file of a download in progress (locked)
// nor one just created.
TEST_F(WeightsTest, ADownloadKilledMidwayIsClearedByTheNextLookup)
{
	const std::string name = serve(random_checkpoint(5000, 9), [](const std::string &) { return "killed.pth"; });
	start_server();
	fs::create_directories(cache_);
	const auto an_hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);
	const std::string abandoned = cache_ + "/" + name + ".partial-AbCdEf";
	const std::string in_progress = cache_ + "/" + name + ".partial-GhIjKl";
	const std::string just_created = cache_ + "/" + name + ".partial-MnOpQr";
	const std::string other = cache_ + "/other.pth.partial-StUvWx";
	for (const std::string &path : { abandoned, in_progress, just_created, other })
		write_file(path, "part of a download");
	for (const std::string &path : { abandoned, in_progress, other })
		fs::last_write_time(path, an_hour_ago);
	const int held = ::open(in_progress.c_str(), O_RDONLY | O_CLOEXEC);
	ASSERT_GE(held, 0);
	ASSERT_EQ(::flock(held, LOCK_EX | LOCK_NB), 0);

	const std::string path = frcnn::resolve_weights(server_->url("/files/" + name));
	::close(held);
	EXPECT_EQ(entries(cache_),
		  (std::vector<std::string>{ name, fs::path(in_progress).filename().string(),
					     fs::path(just_created).filename().string(), "other.pth.partial-StUvWx" }));

	/* Also when the file is in the cache already. */
	EXPECT_EQ(frcnn::resolve_weights(server_->url("/files/" + name)), path);
	EXPECT_EQ(entries(cache_),
		  (std::vector<std::string>{ name, fs::path(just_created).filename().string(),
					     "other.pth.partial-StUvWx" }));
}

TEST_F(WeightsTest, FollowsRedirectsAndNamesFileAfterTheGivenUrl)
{
	std::string name = serve(random_checkpoint(5000, 6), [](const std::string &digest) {
		return "moved-" + digest.substr(0, 10) + ".pth";
	});
	start_server();

	std::string path = frcnn::resolve_weights(server_->url("/moved/" + name + "?download=1#x"));
	EXPECT_EQ(path, cache_ + "/" + name);
	EXPECT_TRUE(read_file(path) == read_file(served_ + "/files/" + name));
	EXPECT_EQ(server_->requests(), 2u);
}

TEST_F(WeightsTest, UnreachableServerSaysWhatToFetchAndWhere)
{
	ClosedPort port;
	const std::string url = "http://127.0.0.1:" + std::to_string(port.port()) +
				"/models/fasterrcnn_tiny-0123abcd.pth";
	std::string message = error_of([&] { frcnn::resolve_weights(url); });
	EXPECT_NE(message.find("could not download " + url), std::string::npos) << message;
	EXPECT_NE(message.find(cache_ + "/fasterrcnn_tiny-0123abcd.pth"), std::string::npos) << message;
	EXPECT_EQ(entries(cache_), std::vector<std::string>{});
}

TEST_F(WeightsTest, HttpErrorIsReported)
{
	start_server();
	const std::string url = server_->url("/files/missing-0123abcd.pth");
	/* The error page's bytes are no progress of the download (a bar would flash on a terminal). */
	std::vector<std::pair<long long, long long>> progress;
	std::string message = error_of([&] {
		frcnn::resolve_weights(url, [&](long long done, long long total) { progress.emplace_back(done, total); });
	});
	for (const auto &[done, total] : progress)
		EXPECT_TRUE(done == 0 && total < 0) << "progress " << done << " of " << total << " for an error page";
	EXPECT_NE(message.find("404"), std::string::npos) << message;
	EXPECT_NE(message.find(url), std::string::npos) << message;
	EXPECT_NE(message.find(cache_ + "/missing-0123abcd.pth"), std::string::npos) << message;
	EXPECT_EQ(entries(cache_), std::vector<std::string>{});
}

TEST_F(WeightsTest, ProgressCallbackCanAbortTheDownload)
{
	std::string name = serve(random_checkpoint(1 << 20, 7), [](const std::string &digest) {
		return "aborted-" + digest.substr(0, 8) + ".pth";
	});
	start_server();

	struct Cancelled {};
	EXPECT_THROW(frcnn::resolve_weights(server_->url("/files/" + name),
					    [](long long, long long) { throw Cancelled(); }),
		     Cancelled);
	EXPECT_EQ(entries(cache_), std::vector<std::string>{});
}

TEST_F(WeightsTest, PresetIsTakenFromCacheWithoutNetwork)
{
	// A file a Python user already downloaded (or copied by hand) is used as is, without hashing.
	const auto preset = frcnn::find_weights_preset("coco-mobilenet");
	ASSERT_TRUE(preset);
	std::string name = preset->url.substr(preset->url.rfind('/') + 1);
	fs::create_directories(cache_);
	write_file(cache_ + "/" + name, "not checked again");
	EXPECT_EQ(frcnn::resolve_weights("coco-mobilenet"), cache_ + "/" + name);

	// The other presets are not there; with a cache that cannot be created the download fails
	// before any network access, and the message says what to fetch and how to get around it.
	env_.set("TORCH_HOME", cache_ + "/" + name);
	std::string message = error_of([] { frcnn::resolve_weights("coco"); });
	EXPECT_NE(message.find(frcnn::find_weights_preset("coco")->url), std::string::npos) << message;
	EXPECT_NE(message.find("TORCH_HOME"), std::string::npos) << message;
}

TEST_F(WeightsTest, CacheEntryThatIsNotAFileIsReported)
{
	fs::create_directories(cache_ + "/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth");
	std::string message = error_of([] { frcnn::resolve_weights("coco"); });
	EXPECT_NE(message.find(cache_ + "/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"), std::string::npos)
		<< message;
	EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
}

// A preset or URL is kept in the cache under its file name, and needs a download until that file
// is there; a file path never does.
TEST_F(WeightsTest, TellsWhichWeightsNeedADownload)
{
	const auto preset = frcnn::find_weights_preset("coco-mobilenet");
	ASSERT_TRUE(preset);
	const std::string name = preset->url.substr(preset->url.rfind('/') + 1);
	const std::string url = "http://127.0.0.1:1/models/" + name + "?version=2";
	EXPECT_EQ(frcnn::weights_cache_path("coco-mobilenet"), cache_ + "/" + name);
	EXPECT_EQ(frcnn::weights_cache_path(url), cache_ + "/" + name);
	EXPECT_EQ(frcnn::weights_cache_path(cache_ + "/" + name), std::nullopt) << "a file path is no download";
	EXPECT_TRUE(frcnn::weights_need_download("coco-mobilenet"));
	EXPECT_TRUE(frcnn::weights_need_download(url));
	EXPECT_TRUE(frcnn::weights_need_download("coco"));

	fs::create_directories(cache_);
	write_file(cache_ + "/" + name, "cached");
	EXPECT_FALSE(frcnn::weights_need_download("coco-mobilenet"));
	EXPECT_FALSE(frcnn::weights_need_download(url)) << "a URL's file is cached by its file name";
	EXPECT_TRUE(frcnn::weights_need_download("coco"));

	EXPECT_FALSE(frcnn::weights_need_download(cache_ + "/" + name));
	EXPECT_FALSE(frcnn::weights_need_download(scratch_.path() + "/missing.pth"))
		<< "a missing file is no download";
	EXPECT_FALSE(frcnn::weights_need_download("http://127.0.0.1:1/")) << "no file name: resolve_weights says so";
}

// Only a preset's weights that download tell their class count before they load: the download
// is the published file (checked by its hash). A cached file may be any, a file path too.
TEST_F(WeightsTest, ClassCountBeforeDownloadOnlyOfAPresetsDownload)
{
	const auto preset = frcnn::find_weights_preset("coco-mobilenet");
	ASSERT_TRUE(preset);
	ASSERT_GT(preset->num_classes, 0);
	const std::string name = preset->url.substr(preset->url.rfind('/') + 1);
	const std::string url = "http://127.0.0.1:1/models/" + name;
	EXPECT_EQ(frcnn::class_count_before_download("coco-mobilenet", 0), preset->num_classes);
	EXPECT_EQ(frcnn::class_count_before_download(url, 0), preset->num_classes) << "the preset's file name";
	EXPECT_EQ(frcnn::class_count_before_download(url, preset->num_classes), preset->num_classes);
	EXPECT_EQ(frcnn::class_count_before_download(url, preset->num_classes + 1), 0)
		<< "another class count is the load's to refuse";
	EXPECT_EQ(frcnn::class_count_before_download("http://127.0.0.1:1/models/other.pth", 0), 0)
		<< "a URL of other weights";
	EXPECT_EQ(frcnn::class_count_before_download(scratch_.path() + "/" + name, 0), 0)
		<< "a file path is no download";

	fs::create_directories(cache_);
	write_file(cache_ + "/" + name, "cached");
	EXPECT_EQ(frcnn::class_count_before_download("coco-mobilenet", 0), 0) << "a cached file may be any";
	EXPECT_EQ(frcnn::class_count_before_download(url, 0), 0);
	EXPECT_EQ(frcnn::class_count_before_download("coco", 0), frcnn::find_weights_preset("coco")->num_classes)
		<< "another preset still downloads";
}

TEST_F(WeightsTest, UrlWithoutFileName)
{
	std::string message = error_of([] { frcnn::resolve_weights("https://example.invalid/models/"); });
	EXPECT_NE(message.find("https://example.invalid/models/"), std::string::npos) << message;
	message = error_of([] { frcnn::resolve_weights("http://example.invalid"); });
	EXPECT_NE(message.find("file name"), std::string::npos) << message;
}

TEST_F(WeightsTest, LocalPaths)
{
	std::string file = scratch_.path() + "/model.pth";
	write_file(file, "weights");
	EXPECT_EQ(frcnn::resolve_weights(file), file);

	std::string missing = scratch_.path() + "/no/such/model.pth";
	std::string message = error_of([&] { frcnn::resolve_weights(missing); });
	EXPECT_NE(message.find(missing), std::string::npos) << message;
	EXPECT_NE(message.find("No such file"), std::string::npos) << message;

	message = error_of([&] { frcnn::resolve_weights(scratch_.path()); });
	EXPECT_NE(message.find(scratch_.path()), std::string::npos) << message;
	EXPECT_NE(message.find("folder"), std::string::npos) << message;

	// A bare word that is neither a preset nor a file lists the presets.
	message = error_of([] { frcnn::resolve_weights("cocoo"); });
	EXPECT_NE(message.find("'cocoo'"), std::string::npos) << message;
	for (const auto &preset : frcnn::weights_presets())
		EXPECT_NE(message.find(preset.name), std::string::npos) << message;

	message = error_of([] { frcnn::resolve_weights(""); });
	EXPECT_NE(message.find("coco"), std::string::npos) << message;
}

// Collects what a function writes to stderr while it runs, with stderr replaced by `fd`.
class StderrRedirect
{
public:
	explicit StderrRedirect(int fd)
	{
		fflush(stderr);
		saved_ = dup(STDERR_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	~StderrRedirect()
	{
		fflush(stderr);
		dup2(saved_, STDERR_FILENO);
		close(saved_);
	}

private:
	int saved_;
};

std::string drain(int fd)
{
	std::string text;
	char buffer[4096];
	struct pollfd pfd = { fd, POLLIN, 0 };
	while (poll(&pfd, 1, 100) > 0) {
		ssize_t n = read(fd, buffer, sizeof(buffer));
		if (n <= 0)
			break;
		text.append(buffer, n);
	}
	return text;
}

TEST(TerminalProgressBar, SilentWhenStderrIsNotATerminal)
{
	int fds[2];
	ASSERT_EQ(pipe(fds), 0);
	{
		StderrRedirect redirect(fds[1]);
		auto bar = frcnn::terminal_progress_bar();
		ASSERT_TRUE(bar);
		bar(10, 100);
		bar(100, 100);
	}
	close(fds[1]);
	EXPECT_EQ(drain(fds[0]), "");
	close(fds[0]);
}

TEST(TerminalProgressBar, DrawsOnATerminal)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0)
		GTEST_SKIP() << "no pseudo-terminal to draw on: " << strerror(errno);
	ASSERT_EQ(grantpt(master), 0);
	ASSERT_EQ(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	ASSERT_GE(slave, 0);

	{
		StderrRedirect redirect(slave);
		auto bar = frcnn::terminal_progress_bar();
		bar(0, 4 << 20);
		bar(4 << 20, 4 << 20);
	}
	std::string finished = drain(master);
	EXPECT_NE(finished.find("100%"), std::string::npos) << finished;
	EXPECT_NE(finished.find("4.0/4.0 MiB"), std::string::npos) << finished;
	EXPECT_NE(finished.find('\n'), std::string::npos) << finished;

	// A download that stops half way still ends its line when the bar goes away.
	{
		StderrRedirect redirect(slave);
		auto bar = frcnn::terminal_progress_bar();
		bar(1 << 20, 2 << 20);
	}
	std::string interrupted = drain(master);
	EXPECT_NE(interrupted.find("50%"), std::string::npos) << interrupted;
	ASSERT_FALSE(interrupted.empty());
	EXPECT_EQ(interrupted.back(), '\n') << interrupted;

	close(slave);
	close(master);
}

} // namespace
