/* lanyard-helper: helper_main on its own, so that tests/integration/test_helper.sh can run the
 * file helper before `lanyard-agent helper` is routed to it in agent/main.c. */
#include "helper.h"

int main(int argc, char **argv)
{
	return helper_main(argc, argv);
}
