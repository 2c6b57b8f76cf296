// SPDX-License-Identifier: BSD-3-Clause
// Small helpers shared by the test programs.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace frcnn::test {

// A TCP socket bound to a free port on 127.0.0.1 (close-on-exec), and that port; throws when
// there is none.
inline int bind_loopback(int *port)
{
	const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = {};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t size = sizeof(addr);
	if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
	    getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &size) != 0) {
		if (fd >= 0)
			close(fd);
		throw std::runtime_error("cannot bind a port on 127.0.0.1");
	}
	*port = ntohs(addr.sin_port);
	return fd;
}

// Value of an environment variable the test harness sets; throws when it is missing so that a
// misconfigured run fails instead of silently testing nothing.
inline std::string env(const char *name)
{
	const char *v = std::getenv(name);
	if (v == nullptr || *v == '\0')
		throw std::runtime_error(std::string("environment variable ") + name +
					 " is not set; run the tests through meson test");
	return v;
}

inline std::string fixtures(const std::string &file = "")
{
	return env("FRCNN_FIXTURES") + (file.empty() ? "" : "/" + file);
}

inline std::string read_file(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw std::runtime_error("cannot open " + path);
	std::ostringstream s;
	s << in.rdbuf();
	return s.str();
}

// The message of the exception `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()> &f)
{
	try {
		f();
	} catch (const std::exception &e) {
		return e.what();
	}
	return "(no error)";
}

// A new folder under the system's temporary folder, removed with what it holds at the end.
struct TempDir {
	explicit TempDir(const std::string &prefix = "frcnn-test")
	{
		std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
		if (mkdtemp(pattern.data()) == nullptr)
			throw std::runtime_error("mkdtemp failed");
		path = pattern;
	}
	~TempDir() { std::filesystem::remove_all(path); }
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;
	std::filesystem::path path;
};

// The test program's own folder under the system's temporary folder, removed with what its tests
// wrote there when the program exits: test programs that run at once never share a file, and
// none is left behind.
inline std::string program_temp_dir()
{
	static const TempDir dir;
	return dir.path.string() + "/";
}

// Runs a shell command: its exit status (-1 when it did not exit) and what it printed on
// standard output and standard error.
inline std::pair<int, std::string> run_command(const std::string &command)
{
	std::string output;
	FILE *pipe = popen((command + " 2>&1").c_str(), "r");
	if (pipe == nullptr)
		return {-1, "popen failed"};
	char buffer[4096];
	std::size_t n;
	while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
		output.append(buffer, n);
	const int status = pclose(pipe);
	return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// The ids of the process's threads, to tell which ones something started.
inline std::set<std::string> process_threads()
{
	std::set<std::string> ids;
	for (const auto &entry : std::filesystem::directory_iterator("/proc/self/task"))
		ids.insert(entry.path().filename().string());
	return ids;
}

} // namespace frcnn::test
