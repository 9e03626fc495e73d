// Command nnp is the program of the CRI validation suite's nonewprivs
// image (integration/critest): installed setuid root, it prints its
// effective user ID, which is root's unless the container has
// no_new_privileges.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
