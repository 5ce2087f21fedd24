// Loads a SavedModel with tensorflow::LoadSavedModel (the loader TF Serving links) and runs
// requests against its signatures, built against the TensorFlow wheel's own libtensorflow_cc and
// headers by tests/serving/test_cc_loader.py.
//
//   run_savedmodel SAVED_MODEL_DIR REQUESTS_DIR OUT_DIR
//
// REQUESTS_DIR/requests.txt has one request a line: "<id> <signature> <input key>..."; each input is
// REQUESTS_DIR/<id>.<key>.pb, a serialized TensorProto. Every output of the signature is written to
// OUT_DIR/<id>.<output key>.pb (a TensorProto). stdout lists the model's signatures, one
// "signature <name>" line each, then "ran <id> <signature>" per request. Any failure: a message on
// stderr and exit code 1.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "run_savedmodel: " << message << std::endl;
  return 1;
}

bool ReadFile(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *contents = buffer.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return Fail("usage: run_savedmodel SAVED_MODEL_DIR REQUESTS_DIR OUT_DIR");
  const std::string model_dir = argv[1], requests_dir = argv[2], out_dir = argv[3];

  tensorflow::SavedModelBundle bundle;
  tensorflow::SessionOptions session_options;
  tensorflow::RunOptions run_options;
  tensorflow::Status status = tensorflow::LoadSavedModel(session_options, run_options, model_dir, {"serve"},
                                                         &bundle);
  if (!status.ok()) return Fail("LoadSavedModel(" + model_dir + "): " + status.ToString());
  const auto& signatures = bundle.meta_graph_def.signature_def();
  for (const auto& entry : signatures) std::cout << "signature " << entry.first << "\n";

  std::ifstream requests(requests_dir + "/requests.txt");
  if (!requests) return Fail("cannot read " + requests_dir + "/requests.txt");
  std::string line;
  while (std::getline(requests, line)) {
    std::istringstream fields(line);
    std::string id, signature_name, key;
    if (!(fields >> id >> signature_name)) continue;
    auto found = signatures.find(signature_name);
    if (found == signatures.end()) return Fail("request " + id + ": no signature " + signature_name);
    const tensorflow::SignatureDef& signature = found->second;

    std::vector<std::pair<std::string, tensorflow::Tensor>> inputs;
    while (fields >> key) {
      auto info = signature.inputs().find(key);
      if (info == signature.inputs().end()) return Fail("request " + id + ": signature has no input " + key);
      std::string bytes;
      tensorflow::TensorProto proto;
      const std::string path = requests_dir + "/" + id + "." + key + ".pb";
      if (!ReadFile(path, &bytes) || !proto.ParseFromString(bytes)) return Fail("cannot parse " + path);
      tensorflow::Tensor tensor;
      if (!tensor.FromProto(proto)) return Fail("not a valid tensor: " + path);
      inputs.emplace_back(info->second.name(), std::move(tensor));
    }
    std::vector<std::string> output_keys, output_names;
    for (const auto& output : signature.outputs()) {
      output_keys.push_back(output.first);
      output_names.push_back(output.second.name());
    }
    std::vector<tensorflow::Tensor> outputs;
    status = bundle.session->Run(inputs, output_names, {}, &outputs);
    if (!status.ok()) return Fail("request " + id + " (" + signature_name + "): " + status.ToString());
    for (size_t i = 0; i < outputs.size(); ++i) {
      tensorflow::TensorProto proto;
      if (outputs[i].dtype() == tensorflow::DT_STRING) {
        outputs[i].AsProtoField(&proto);  // string_val: tensor_content has no portable string encoding
      } else {
        outputs[i].AsProtoTensorContent(&proto);
      }
      const std::string path = out_dir + "/" + id + "." + output_keys[i] + ".pb";
      std::ofstream out(path, std::ios::binary);
      if (!out || !proto.SerializeToOstream(&out)) return Fail("cannot write " + path);
    }
    std::cout << "ran " << id << " " << signature_name << "\n";
  }
  return 0;
}
