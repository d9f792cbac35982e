/*
 * xsp3_sim.h: the one simulator-only entry point. x3s_open calls it (in simulator builds only)
 * just before xsp3_config, on the same thread; xsp3_config consumes the parameters.
 */
#ifndef X3S_XSP3_SIM_H
#define X3S_XSP3_SIM_H

#include "x3s.h"

void xsp3_sim_set_params(const x3s_sim_params *p);

#endif
