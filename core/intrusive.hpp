// Intrusive lists: the links live in the element (libuv's QUEUE idea), so a
// push or pop never allocates and an element is on at most one list per link.
//
//   Stack<T, &T::next>             LIFO (a free list): push, pop, size.
//   Fifo<T, &T::next>              singly linked FIFO: push_back, pop_front, take_all.
//   List<T, &T::next, &T::prev>    doubly linked FIFO: the above plus remove(x) in O(1).
//
// Unlike libuv's circular QUEUE, the ends are null-terminated and the heads
// are two pointers: offload's hot path (core/offload.cpp) writes one link per
// push on its Stack and Fifo lists, and the element's `prev` is touched only
// by List. They own nothing: whoever pushes an element decides who frees it.
// Loop thread only, like everything that uses them.
#pragma once

#include <cstddef>

namespace hostlet {

template <class T, T* T::*Next> class Stack {
 public:
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  void push(T* x) {
    x->*Next = head_;
    head_ = x;
    ++size_;
  }
  T* pop() {  // nullptr when empty
    T* x = head_;
    if (x) {
      head_ = x->*Next;
      --size_;
    }
    return x;
  }

 private:
  T* head_ = nullptr;
  size_t size_ = 0;
};

template <class T, T* T::*Next> class Fifo {
 public:
  bool empty() const { return head_ == nullptr; }
  T* front() const { return head_; }
  T* back() const { return tail_; }
  // Returns whether the list was empty before.
  bool push_back(T* x) {
    x->*Next = nullptr;
    if (tail_) {
      tail_->*Next = x;
      tail_ = x;
      return false;
    }
    head_ = tail_ = x;
    return true;
  }
  T* pop_front() {  // nullptr when empty
    T* x = head_;
    if (x) {
      head_ = x->*Next;
      if (!head_) tail_ = nullptr;
    }
    return x;
  }
  // Empties the list and returns its old head: walk the chain with Next.
  T* take_all() {
    T* x = head_;
    head_ = tail_ = nullptr;
    return x;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

template <class T, T* T::*Next, T* T::*Prev> class List {
 public:
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }
  void push_back(T* x) {
    x->*Next = nullptr;
    x->*Prev = tail_;
    if (tail_) tail_->*Next = x;
    else head_ = x;
    tail_ = x;
    ++size_;
  }
  // x must be on this list.
  void remove(T* x) {
    if (x->*Prev) (x->*Prev)->*Next = x->*Next;
    else head_ = x->*Next;
    if (x->*Next) (x->*Next)->*Prev = x->*Prev;
    else tail_ = x->*Prev;
    x->*Next = x->*Prev = nullptr;
    --size_;
  }
  T* pop_front() {  // nullptr when empty
    T* x = head_;
    if (x) remove(x);
    return x;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hostlet
