// weft/weft.hpp: the umbrella header -- everything weft offers.
#pragma once

#include <weft/channel.hpp>
#include <weft/context.hpp>
#include <weft/context_var.hpp>
#include <weft/deadline.hpp>
#include <weft/error.hpp>
#include <weft/executor.hpp>
#include <weft/fiber_local.hpp>
#include <weft/offload.hpp>
#include <weft/propagation.hpp>
#include <weft/select.hpp>
#include <weft/shield.hpp>
#include <weft/signal_dump.hpp>
#include <weft/sync.hpp>
#include <weft/task.hpp>
#include <weft/task_group.hpp>
#include <weft/this_fiber.hpp>
#include <weft/token.hpp>
