// The MPI backend's collectives against a reference each rank computes itself: rank r's data
// is drawn from Philox seeded with 100 + r, so every rank can draw every rank's data.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "dist/world.h"
#include "nn/functional/elementwise.h"
#include "tensor/generator.h"

namespace lumen {
namespace {

Tensor data_of_rank(int r, const Shape& shape, DType dtype) {
  Generator gen(100 + static_cast<uint64_t>(r));
  Tensor x = randn(shape, {DType::f64}, &gen) * 10.0;
  return x.to(dtype);
}

// The reference: rank-wise data combined in f64.
std::vector<double> reference(int world, const Shape& shape, DType dtype, dist::ReduceOp op) {
  std::vector<double> out = data_of_rank(0, shape, dtype).to_vector<double>();
  for (int r = 1; r < world; ++r) {
    std::vector<double> x = data_of_rank(r, shape, dtype).to_vector<double>();
    for (size_t i = 0; i < out.size(); ++i) {
      if (op == dist::ReduceOp::max)
        out[i] = std::max(out[i], x[i]);
      else if (op == dist::ReduceOp::min)
        out[i] = std::min(out[i], x[i]);
      else
        out[i] += x[i];
    }
  }
  if (op == dist::ReduceOp::avg)
    for (double& v : out) v /= world;
  return out;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "element " << i;
}

TEST(MpiCommunicator, AllReduceMatchesTheReference) {
  auto comm = dist::world();
  EXPECT_EQ(comm->backend(), "mpi");
  int rank = comm->rank(), world = comm->world_size();
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    for (dist::ReduceOp op :
         {dist::ReduceOp::sum, dist::ReduceOp::avg, dist::ReduceOp::max, dist::ReduceOp::min}) {
      if (op == dist::ReduceOp::avg && dtype == DType::i64) continue;
      Tensor x = data_of_rank(rank, {37, 3}, dtype);
      comm->all_reduce(x, op);
      expect_near_all(x.to_vector<double>(), reference(world, {37, 3}, dtype, op),
                      dtype == DType::f32 ? 1e-6 : 1e-12);
    }
  }
}

TEST(MpiCommunicator, SeveralAsyncAllReducesInFlightCompleteInOrder) {
  auto comm = dist::world();
  std::vector<Tensor> xs;
  std::vector<std::shared_ptr<dist::Work>> works;
  for (int k = 0; k < 6; ++k) {
    xs.push_back(data_of_rank(comm->rank(), {1000 + k}, DType::f32));
    works.push_back(comm->all_reduce_async(xs.back(), dist::ReduceOp::avg));
  }
  for (int k = 0; k < 6; ++k) {
    works[static_cast<size_t>(k)]->wait();
    EXPECT_TRUE(works[static_cast<size_t>(k)]->completed());
    expect_near_all(xs[static_cast<size_t>(k)].to_vector<double>(),
                    reference(comm->world_size(), {1000 + k}, DType::f32, dist::ReduceOp::avg),
                    1e-6);
  }
}

TEST(MpiCommunicator, BroadcastAllGatherReduceScatter) {
  auto comm = dist::world();
  int rank = comm->rank(), world = comm->world_size();
  Tensor b = data_of_rank(rank, {5, 4}, DType::f32);
  comm->broadcast(b, world - 1);
  EXPECT_EQ(b.to_vector<float>(), data_of_rank(world - 1, {5, 4}, DType::f32).to_vector<float>());

  Tensor g = comm->all_gather(data_of_rank(rank, {3, 2}, DType::f64));
  ASSERT_EQ(g.shape(), (Shape{world, 3, 2}));
  for (int r = 0; r < world; ++r)
    EXPECT_EQ(g.select(0, r).to_vector<double>(),
              data_of_rank(r, {3, 2}, DType::f64).to_vector<double>());

  Shape shape{2 * world, 3};
  Tensor rs = comm->reduce_scatter(data_of_rank(rank, shape, DType::f32), dist::ReduceOp::sum);
  ASSERT_EQ(rs.shape(), (Shape{2, 3}));
  std::vector<double> full = reference(world, shape, DType::f32, dist::ReduceOp::sum);
  std::vector<double> mine(full.begin() + rank * 6, full.begin() + rank * 6 + 6);
  expect_near_all(rs.to_vector<double>(), mine, 1e-6);

  EXPECT_EQ(comm->broadcast_string(rank == 0 ? "from rank 0" : "ignored"), "from rank 0");
  comm->barrier();
}

TEST(MpiCommunicator, ErrorsNameTheCollectiveAndTheTensor) {
  auto comm = dist::world();
  try {
    comm->reduce_scatter(zeros({3, 2}), dist::ReduceOp::sum);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("divisible by the world size 2, got shape [3, 2]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(comm->all_reduce(zeros({4, 4}).t()), Error);
  EXPECT_THROW(comm->broadcast(zeros({2}), 5), Error);
  comm->barrier();  // nothing was sent: the ranks are still in step
}

// A rank that arrives late: the others' wait fails after the timeout, naming the collective,
// and the communicator refuses further work. Rank 1 then arrives, so the all-reduce does
// complete and the job can go on with another communicator.
TEST(MpiCommunicator, ARankThatDoesNotArriveMakesTheOthersTimeOut) {
  using namespace std::chrono_literals;
  auto comm = dist::new_world_communicator({.timeout = 300ms});
  Tensor x = ones({8});
  if (comm->rank() == 0) {
    auto start = std::chrono::steady_clock::now();
    try {
      comm->all_reduce(x);
      ADD_FAILURE() << "expected dist::TimeoutError";
    } catch (const dist::TimeoutError& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("all_reduce(sum) of 8 f32 elements on rank 0 of 2 did not complete "
                       "within 300 ms"),
                std::string::npos)
          << m;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
    try {
      comm->barrier();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("failed earlier"), std::string::npos) << e.what();
    }
  } else {
    std::this_thread::sleep_for(1500ms);
    comm->all_reduce(x);
  }
  // The late all-reduce has completed on every rank once this barrier passes.
  dist::world()->barrier();
}

}  // namespace
}  // namespace lumen
