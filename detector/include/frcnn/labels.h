// SPDX-License-Identifier: BSD-3-Clause
// Class names: the COCO names torchvision's detectors use, a model's names when none are given,
// and labels files (one name a line, the form frcnndetect's `labels` and frcnn-detect's
// --labels read and frcnn-train writes).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace frcnn {

// torchvision's 91 COCO category names, index = label id, "__background__" at 0 and "N/A" for
// the ids COCO left unused.
const std::vector<std::string> &coco_category_names();

// The name of a class that has none: "class <id>".
std::string unnamed_class_name(int64_t id);

// The name torchvision gives a class no box is labelled with (COCO's unused ids): "N/A".
const std::string &unused_class_name();

// The names used when no labels file is given: the COCO names for a 91-class model, otherwise
// "__background__" and unnamed_class_name() for every other id.
std::vector<std::string> default_labels(int num_classes);

// labels[id] when it exists, else unnamed_class_name(id).
std::string label_name(const std::vector<std::string> &labels, int64_t id);

// Reads a labels file: one name per line in UTF-8, spaces at either end and trailing empty lines
// ignored, a byte order mark too. The file names every class, background first (num_classes
// lines), or every class but the background (num_classes - 1 lines, the first line naming label
// 1). Throws frcnn::Error otherwise, for an empty line amid the names, for a file that is no
// UTF-8 text, a folder, a device or a pipe, or one that cannot be read.
std::vector<std::string> read_labels_file(const std::string &path, int num_classes);

// The two halves of read_labels_file(), for a program that reads the file before its model's
// class count is known: the names of the file (its checks of the text: no NUL bytes, UTF-8, a
// regular file that can be read), then the labels of a model of `num_classes` classes from them
// (the count and empty lines; `path` names the file in the errors).
std::vector<std::string> read_labels_file_names(const std::string &path);
std::vector<std::string> labels_of_file_names(std::vector<std::string> names, const std::string &path, int num_classes);

// A name as one line of a labels file, read back as it is: line breaks, tabs and other control
// characters made spaces, no spaces at either end.
std::string labels_file_line(const std::string &name);

// The entries of a comma-separated list, spaces at either end of each left out, empty entries
// too.
std::vector<std::string> comma_separated(const std::string &list);

// Parses a list of classes (frcnndetect's `classes`, frcnn-detect's --classes): names or ids
// separated by commas ("person, car, 3"). Names match labels regardless of ASCII case; a name
// shared by several ids selects them all. Throws frcnn::Error naming the first unknown entry,
// an id out of range or the background's. An empty list gives an empty set (no filter).
std::set<int64_t> parse_classes(const std::string &list, const std::vector<std::string> &labels);

// The entries of a list of score thresholds of single classes (below), each the class as written
// and its score, in the list's order. Needs no labels, so that a program can check a list before
// its model loads: throws frcnn::Error naming the first entry that is not class=score with a score
// from 0 to 1 (whether the classes exist is parse_class_thresholds()'s to tell).
std::vector<std::pair<std::string, double>> split_class_thresholds(const std::string &list);

// Parses a list of score thresholds of single classes (`class-thresholds`, --class-thresholds):
// entries "class=score" separated by commas, the class a name or an id as in parse_classes() (a
// name shared by several ids sets them all), the score from 0 to 1 with a dot whatever the
// locale ("person=0.7, car=0.3, 3=0.4"); a later entry for a class wins. Throws frcnn::Error
// naming the first bad entry. An empty list gives an empty map.
std::map<int64_t, double> parse_class_thresholds(const std::string &list, const std::vector<std::string> &labels);

// parse_class_thresholds() of entries already split by split_class_thresholds().
std::map<int64_t, double> class_thresholds_by_id(const std::vector<std::pair<std::string, double>> &entries,
						 const std::vector<std::string> &labels);

// Checks class names before the model, and so its labels, is known (a program that loads or
// downloads its weights after its options are read): throws the frcnn::Error parse_classes()
// would throw for the first of `entries` that no labels the model can have would match, that is
// not among `file_names` (a labels file's names, read_labels_file_names()) or, without a labels
// file (nullptr), neither a COCO name nor "class N" (the names of a model of other than 91
// classes). Ids, and names of the background, are left to parse_classes().
void check_class_names(const std::vector<std::string> &entries, const std::vector<std::string> *file_names);
// The same for the classes of a list of class thresholds split by split_class_thresholds().
void check_class_names(const std::vector<std::pair<std::string, double>> &class_thresholds,
		       const std::vector<std::string> *file_names);

// The score threshold a model runs at so that the thresholds of single classes can be applied to
// its detections after it: the lowest of `score_threshold` and theirs (NMS is by class, so a
// class's detections are then those its own threshold alone would give).
double lowest_score_threshold(double score_threshold, const std::map<int64_t, double> &class_thresholds);

// Whether a detection of class `label` scoring `score` is kept: of `classes` (every class when
// empty) and above its class's threshold in `class_thresholds`, else above `score_threshold`,
// compared in float as the model compares its scores.
bool kept_by_class(int64_t label, float score, const std::set<int64_t> &classes,
		   const std::map<int64_t, double> &class_thresholds, double score_threshold);

} // namespace frcnn
