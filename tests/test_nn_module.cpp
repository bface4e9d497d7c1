// nn::Module itself: registration, enumeration order, counting, state_dict plumbing. The layers'
// use of it is covered in test_nn_layers.cpp.
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

// A module whose registration methods are public, so the tests can misuse them.
struct OpenModule : nn::Module {
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
  std::string type_name() const override { return "OpenModule"; }
};

// weight [2, 3], bias [3], a persistent and a non-persistent buffer.
struct Cell : nn::Module {
  Tensor weight = zeros({2, 3}), bias = zeros({3}), count = zeros({1}), scratch = zeros({4});
  Cell() {
    register_parameter("weight", weight);
    register_parameter("bias", bias);
    register_buffer("count", count);
    register_buffer("scratch", scratch, /*persistent=*/false);
  }
  std::string type_name() const override { return "Cell"; }
};

// root -> (first: Cell, inner: {left: Cell, right: Cell (shared_ptr)}, last: Cell)
struct Inner : nn::Module {
  Cell left;
  std::shared_ptr<Cell> right = std::make_shared<Cell>();
  Inner() {
    register_module("left", left);
    register_module("right", right);
  }
  std::string type_name() const override { return "Inner"; }
};
struct Root : nn::Module {
  Cell first;
  Inner inner;
  Cell last;
  Tensor scale = ones({1});
  Root() {
    register_parameter("scale", scale);
    register_module("first", first);
    register_module("inner", inner);
    register_module("last", last);
  }
  std::string type_name() const override { return "Root"; }
};

std::vector<std::string> names_of(const nn::NamedTensors& v) {
  std::vector<std::string> out;
  for (const auto& [name, t] : v) out.push_back(name);
  return out;
}

TEST(NnModule, DuplicateNamesAreRefusedAcrossKinds) {
  OpenModule m;
  Tensor a = zeros({2}), b = zeros({2}), c = zeros({2});
  m.register_parameter("w", a);
  EXPECT_THROW_MSG(m.register_parameter("w", b), "'w'", "already registered", "OpenModule");
  EXPECT_THROW_MSG(m.register_buffer("w", b), "'w'", "already registered");
  auto child = std::make_shared<OpenModule>();
  EXPECT_THROW_MSG(m.register_module("w", child), "'w'", "already registered");
  m.register_buffer("stat", c);
  EXPECT_THROW_MSG(m.register_parameter("stat", b), "'stat'", "already registered");
  m.register_module("sub", child);
  EXPECT_THROW_MSG(m.register_buffer("sub", b), "'sub'", "already registered");
  // The failed registrations left nothing behind.
  EXPECT_EQ(names_of(m.named_parameters()), std::vector<std::string>({"w"}));
  EXPECT_EQ(names_of(m.named_buffers()), std::vector<std::string>({"stat"}));
  EXPECT_EQ(m.named_children().size(), 1u);
}

TEST(NnModule, DottedEmptyAndUndefinedAreRefused) {
  OpenModule m;
  Tensor a = zeros({2}), undefined;
  EXPECT_THROW_MSG(m.register_parameter("fc.weight", a), "'fc.weight'", "no '.'");
  EXPECT_THROW_MSG(m.register_buffer("", a), "non-empty");
  auto child = std::make_shared<OpenModule>();
  EXPECT_THROW_MSG(m.register_module("a.b", child), "'a.b'", "no '.'");
  EXPECT_THROW_MSG(m.register_parameter("w", undefined), "'w'", "undefined");
  EXPECT_THROW_MSG(m.register_buffer("b", undefined), "'b'", "undefined");
  EXPECT_THROW_MSG(m.register_module("self", m), "'self'", "another");
  EXPECT_TRUE(m.named_parameters().empty());
  EXPECT_TRUE(m.named_children().empty());
}

TEST(NnModule, FloatingParametersRequireGradIntegersDoNot) {
  OpenModule m;
  Tensor w = zeros({3}), frozen = zeros({3}), steps = zeros({1}, {.dtype = DType::i64});
  m.register_parameter("w", w);
  m.register_parameter("frozen", frozen, /*requires_grad=*/false);
  m.register_parameter("steps", steps);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  EXPECT_FALSE(frozen.requires_grad());
  EXPECT_FALSE(steps.requires_grad());
  EXPECT_EQ(m.num_parameters(), 7);
  EXPECT_EQ(m.num_parameters(/*trainable_only=*/true), 3);
}

TEST(NnModule, NamedModulesArePreOrderInRegistrationOrder) {
  Root root;
  std::vector<std::string> names;
  std::vector<std::string> types;
  for (auto& [name, m] : root.named_modules()) {
    names.push_back(name);
    types.push_back(m->type_name());
  }
  EXPECT_EQ(names,
            std::vector<std::string>({"", "first", "inner", "inner.left", "inner.right", "last"}));
  EXPECT_EQ(types, std::vector<std::string>({"Root", "Cell", "Inner", "Cell", "Cell", "Cell"}));
  EXPECT_EQ(root.named_modules()[0].second, &root);
  EXPECT_EQ(root.named_modules()[3].second, &root.inner.left);
  EXPECT_EQ(root.named_modules()[4].second, root.inner.right.get());

  std::vector<std::string> children;
  for (auto& [name, m] : root.named_children()) children.push_back(name);
  EXPECT_EQ(children, std::vector<std::string>({"first", "inner", "last"}));
}

TEST(NnModule, NamedParametersAndBuffersAreDepthFirst) {
  Root root;
  EXPECT_EQ(names_of(root.named_parameters()),
            std::vector<std::string>({"scale", "first.weight", "first.bias", "inner.left.weight",
                                      "inner.left.bias", "inner.right.weight", "inner.right.bias",
                                      "last.weight", "last.bias"}));
  EXPECT_EQ(names_of(root.named_parameters(/*recurse=*/false)),
            std::vector<std::string>({"scale"}));
  // Buffers include the non-persistent ones; the state_dict does not.
  EXPECT_EQ(names_of(root.named_buffers()),
            std::vector<std::string>({"first.count", "first.scratch", "inner.left.count",
                                      "inner.left.scratch", "inner.right.count",
                                      "inner.right.scratch", "last.count", "last.scratch"}));
  nn::StateDict sd = root.state_dict();
  EXPECT_EQ(sd.size(), 9u + 4u);
  EXPECT_EQ(sd.count("first.count"), 1u);
  EXPECT_EQ(sd.count("first.scratch"), 0u);
  // The tensors are the module's own (registered by address).
  EXPECT_TRUE(root.named_parameters()[3].second.same(root.inner.left.weight));
}

TEST(NnModule, NumParametersCountsEveryElementOnce) {
  Root root;
  // scale 1 + four cells of 2 * 3 + 3.
  EXPECT_EQ(root.num_parameters(), 1 + 4 * 9);
  EXPECT_EQ(root.parameters().size(), 9u);
  EXPECT_EQ(root.parameters(/*recurse=*/false).size(), 1u);
  {
    NoGradGuard no_grad;
    root.last.weight.requires_grad_(false);
  }
  EXPECT_EQ(root.num_parameters(/*trainable_only=*/true), 1 + 4 * 9 - 6);
  EXPECT_EQ(root.num_parameters(), 1 + 4 * 9);
}

TEST(NnModule, StateDictSharesStorageAndIsDetached) {
  Cell cell;
  nn::StateDict sd = cell.state_dict();
  EXPECT_FALSE(sd.at("weight").requires_grad());
  sd.at("weight").fill_(2.5);  // allowed: detached, so grad mode does not refuse it
  EXPECT_EQ(cell.weight.to_vector<double>(), std::vector<double>(6, 2.5));
}

TEST(NnModule, LoadStateDictCastsAndChecksBeforeWriting) {
  Cell cell;
  nn::StateDict sd;
  sd["weight"] = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});  // f64 into an f32 module
  sd["bias"] = from_vector<double>({7, 8, 9});
  sd["count"] = from_vector<double>({3}, {1});
  cell.load_state_dict(sd);
  EXPECT_EQ(cell.weight.dtype(), DType::f32);
  EXPECT_EQ(cell.weight.to_vector<double>(), std::vector<double>({1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(cell.weight.requires_grad());
  EXPECT_EQ(cell.count.item(), 3.0);

  // A shape mismatch on one key leaves every tensor as it was.
  nn::StateDict bad = sd;
  bad["weight"] = zeros({2, 3});
  bad["bias"] = zeros({4});
  EXPECT_THROW_MSG(cell.load_state_dict(bad), "bias", "[4]", "[3]");
  EXPECT_EQ(cell.weight.to_vector<double>(), std::vector<double>({1, 2, 3, 4, 5, 6}));

  // Non-strict loads the keys it knows and ignores the rest.
  nn::StateDict partial;
  partial["bias"] = zeros({3});
  partial["extra"] = zeros({1});
  cell.load_state_dict(partial, /*strict=*/false);
  EXPECT_EQ(cell.bias.to_vector<double>(), std::vector<double>({0, 0, 0}));
  EXPECT_THROW_MSG(cell.load_state_dict(partial), "missing keys [weight, count]",
                   "unexpected keys [extra]");
}

TEST(NnModule, TrainEvalZeroGradAndDtypeRecurse) {
  Root root;
  EXPECT_TRUE(root.is_training());
  root.eval();
  for (auto& [name, m] : root.named_modules()) EXPECT_FALSE(m->is_training()) << name;
  root.train();
  for (auto& [name, m] : root.named_modules()) EXPECT_TRUE(m->is_training()) << name;

  Tensor loss = (root.inner.right->weight * 2.0).sum() + root.scale.sum();
  loss.backward();
  EXPECT_TRUE(root.inner.right->weight.grad().defined());
  root.zero_grad();
  for (auto& t : root.parameters()) EXPECT_FALSE(t.grad().defined());

  root.to(DType::f64);
  for (auto& [name, t] : root.named_parameters()) {
    EXPECT_EQ(t.dtype(), DType::f64) << name;
    EXPECT_TRUE(t.requires_grad() && t.is_leaf()) << name;
  }
  // The members themselves were replaced, so layer code sees the new tensors.
  EXPECT_EQ(root.inner.left.weight.dtype(), DType::f64);
  EXPECT_EQ(root.first.count.dtype(), DType::f64);
}

TEST(NnModule, ReprIndentsChildren) {
  Root root;
  EXPECT_EQ(root.repr(),
            "Root(\n"
            "  (first): Cell()\n"
            "  (inner): Inner(\n"
            "    (left): Cell()\n"
            "    (right): Cell()\n"
            "  )\n"
            "  (last): Cell()\n"
            ")");
}

}  // namespace
}  // namespace lumen::testing
